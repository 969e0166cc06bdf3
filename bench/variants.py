"""What the engine could gain: one loss evaluation with its gradient (the seed's objective,
VGG19 cut after conv5_1, as nst runs it) in PyTorch on the same libtorch, as nst does it
(float32, NCHW) and with cheaper variants, interleaved, median s per evaluation:

  fp32        float32, NCHW (what nst and the seed do)
  cl          channels_last (NHWC) weights and image: oneDNN's native layout, no reorders
  bf16        torch.autocast("cpu", bfloat16) around the VGG forward (losses in float32)
  batch4      four same-size images in one forward/backward, time per image

Usage: variants.py [--size 128] [--reps 3] [--threads 2]
"""
import argparse
import json
import statistics
import time

import torch
from torchvision import models

STYLE = {0: 1., 5: 0.8, 10: 0.5, 19: 0.3, 28: 0.1}
CONTENT = 21


def features(vgg, x):
    out = {}
    for i, layer in enumerate(vgg):
        x = layer(x)
        if i in STYLE or i == CONTENT:
            out[i] = x
    return out


def gram(f):
    b, d, h, w = f.shape
    f = f.reshape(b, d, h * w)
    return torch.bmm(f, f.transpose(1, 2))


def evaluate(vgg, x, targets, autocast):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        feats = features(vgg, x)
    feats = {k: v.float() for k, v in feats.items()}
    loss = ((feats[CONTENT] - targets[CONTENT]) ** 2).mean()
    for i, w in STYLE.items():
        _, d, h, ww = feats[i].shape
        loss = loss + 1e6 * w * ((gram(feats[i]) - targets[i]) ** 2).mean() / (d * h * ww)
    g, = torch.autograd.grad(loss, x)
    return g


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--evals", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    base = models.vgg19(weights=None).features[:29]
    for p in base.parameters():
        p.requires_grad_(False)
    cl = models.vgg19(weights=None).features[:29]
    cl.load_state_dict(base.state_dict())
    for p in cl.parameters():
        p.requires_grad_(False)
    cl = cl.to(memory_format=torch.channels_last)
    img = torch.randn(1, 3, a.size, a.size)
    with torch.no_grad():
        t = features(base, img)
        targets = {k: (v if k == CONTENT else gram(v)) for k, v in t.items()}
        targets4 = {k: v.expand(4, *v.shape[1:]).contiguous() for k, v in targets.items()}
    variants = {
        "fp32": lambda: evaluate(base, img.clone().requires_grad_(True), targets, False),
        "cl": lambda: evaluate(cl, img.clone().contiguous(memory_format=torch.channels_last).requires_grad_(True), targets, False),
        "bf16": lambda: evaluate(base, img.clone().requires_grad_(True), targets, True),
        "batch4": lambda: evaluate(base, img.expand(4, -1, -1, -1).clone().requires_grad_(True), targets4, False),
    }
    per = {k: 4 if k == "batch4" else 1 for k in variants}
    res = {k: [] for k in variants}
    for k, f in variants.items():
        f()  # warm-up
    for rep in range(a.reps):
        for k, f in variants.items():
            ts = []
            for _ in range(a.evals):
                t0 = time.perf_counter()
                f()
                ts.append((time.perf_counter() - t0) / per[k])
            res[k].append(statistics.median(ts))
    out = {k: statistics.median(v) for k, v in res.items()}
    print(json.dumps({"size": a.size, "threads": a.threads, "s_per_image_eval": out,
                      "speedup_vs_fp32": {k: out["fp32"] / v for k, v in out.items()}}))


if __name__ == "__main__":
    main()
