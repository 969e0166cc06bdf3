"""What the engine could gain: one loss evaluation with its gradient (the seed's objective,
VGG19 cut after conv5_1, as nst runs it) in PyTorch on the same kernels nst calls, as nst does
it by default (float32, NCHW, one image) and with cheaper variants, interleaved, median s per
image-evaluation:

  fp32        float32, NCHW (nst's default and the seed's)
  cl          channels_last (NHWC) weights and image (nst --memory-format channels-last)
  bf16        autocast to bfloat16 around the VGG forward, losses in float32 (nst --precision bf16)
  cl+bf16     both
  batchN      N same-size images in one forward/backward (nst run --batch-size N), time per image;
              batchN+bf16 the same under bf16 autocast

On the CPU it runs on the very libtorch nst links (.venv-ref); with --device cuda it measures
what the same maths costs on a GPU, to choose nst's GPU defaults (bench/gpu.sh). VGG19 is built
here from its layer list (no torchvision needed) with PyTorch's default random init: timing does
not depend on the values.

Usage: variants.py [--size 128] [--reps 3] [--evals 3] [--threads 2] [--device cpu]
                   [--batches 4] [--variants fp32,cl,bf16,batch4]
"""
import argparse
import json
import statistics
import time

import torch
from torch import nn

STYLE = {0: 1., 5: 0.8, 10: 0.5, 19: 0.3, 28: 0.1}  # conv1_1 .. conv5_1 in VGG19's features
CONTENT = 21  # conv4_2
CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512]  # to conv5_1


def vgg19_to_conv5_1():
    layers, c = [], 3
    for v in CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
    return nn.Sequential(*layers)


def features(vgg, x):
    out = {}
    for i, layer in enumerate(vgg):
        x = layer(x)
        if i in STYLE or i == CONTENT:
            out[i] = x
    return out


def gram(f):
    # As nst computes it (transfer/torch/loss.go): mm per image, not one bmm, whose backward
    # sums a transposed gradient (bench/gram.py).
    b, d, h, w = f.shape
    return torch.stack([torch.mm(t, t.t()) for t in f.reshape(b, d, h * w).unbind(0)])


def evaluate(vgg, x, targets, autocast, device):
    with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=autocast):
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
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", default="4", help="batch sizes of the batchN variants, e.g. 2,4,8")
    ap.add_argument("--variants", default="fp32,cl,bf16,batch4",
                    help="which to run (fp32 always runs: the others are compared with it)")
    a = ap.parse_args()
    dev = a.device
    cuda = dev.startswith("cuda")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    base = vgg19_to_conv5_1().to(dev).eval()
    for p in base.parameters():
        p.requires_grad_(False)
    cl = vgg19_to_conv5_1().to(dev).eval()
    cl.load_state_dict(base.state_dict())
    for p in cl.parameters():
        p.requires_grad_(False)
    cl = cl.to(memory_format=torch.channels_last)
    img = torch.randn(1, 3, a.size, a.size, device=dev)
    with torch.no_grad():
        t = features(base, img)
        targets = {k: (v if k == CONTENT else gram(v)) for k, v in t.items()}

    def batched(n):
        return {k: v.expand(n, *v.shape[1:]).contiguous() for k, v in targets.items()}

    variants = {
        "fp32": (1, lambda: evaluate(base, img.clone().requires_grad_(True), targets, False, dev)),
        "cl": (1, lambda: evaluate(cl, img.clone().contiguous(memory_format=torch.channels_last).requires_grad_(True), targets, False, dev)),
        "bf16": (1, lambda: evaluate(base, img.clone().requires_grad_(True), targets, True, dev)),
        "cl+bf16": (1, lambda: evaluate(cl, img.clone().contiguous(memory_format=torch.channels_last).requires_grad_(True), targets, True, dev)),
    }
    for n in [int(b) for b in a.batches.split(",") if b]:
        tn = batched(n)
        for bf in (False, True):
            name = f"batch{n}" + ("+bf16" if bf else "")
            variants[name] = (n, lambda n=n, tn=tn, bf=bf: evaluate(base, img.expand(n, -1, -1, -1).clone().requires_grad_(True), tn, bf, dev))
    wanted = {"fp32"} | set(a.variants.split(","))
    variants = {k: v for k, v in variants.items() if k in wanted}

    def sync():
        if cuda:
            torch.cuda.synchronize()

    res = {k: [] for k in variants}
    for k, (_, f) in variants.items():
        f()  # warm-up (cuDNN autotuning, oneDNN primitive creation)
        sync()
    for rep in range(a.reps):
        for k, (n, f) in variants.items():
            ts = []
            for _ in range(a.evals):
                sync()
                t0 = time.perf_counter()
                f()
                sync()
                ts.append((time.perf_counter() - t0) / n)
            res[k].append(statistics.median(ts))
    out = {k: statistics.median(v) for k, v in res.items()}
    rec = {"size": a.size, "device": dev, "threads": a.threads, "torch": torch.__version__,
           "s_per_image_eval": out, "speedup_vs_fp32": {k: out["fp32"] / v for k, v in out.items()}}
    if cuda:
        rec["gpu"] = torch.cuda.get_device_name(0)
        rec["max_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
