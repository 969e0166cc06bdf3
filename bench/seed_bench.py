"""The Python side of nst's benchmarks: the seed's loop (reference/seed_loop.py) timed per step.

The model is torchvision's full-width VGG19 `features` with random weights
(models.vgg19(weights=None), torch.manual_seed(0)): the same FLOPs as the pretrained net, which
cannot be downloaded here. Everything else is the seed's code, imported from
reference/seed_loop.py (load_image, get_features, gram_matrix) or copied from its loop body.

Modes:
  step  K optimiser steps of the seed's loop (Adam, lr 0.003) or of torch.optim.LBFGS
        (strong Wolfe, history 100, lr 1, one iteration per step() call); prints one JSON line
        with every step's wall time, the median after --warmup steps, L-BFGS evaluations per
        step and the process's peak RSS.
  peak  a 4096x4096 float32 matmul (MKL sgemm) timed on --threads threads: achieved GFLOP/s.

CPU only, torch.set_num_threads(--threads) (default 2).
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import torch  # noqa: E402
import torch.optim as optim  # noqa: E402
from torchvision import models  # noqa: E402

from seed_loop import get_features, gram_matrix, load_image  # noqa: E402  (the seed's own code)

STYLE_WEIGHTS = {'conv1_1': 1., 'conv2_1': 0.8, 'conv3_1': 0.5, 'conv4_1': 0.3, 'conv5_1': 0.1}


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def model(truncate):
    torch.manual_seed(0)
    vgg = models.vgg19(weights=None).features
    if truncate:
        vgg = vgg[:30]  # through conv5_1's ReLU: what the seed's losses use (nst stops there)
    for p in vgg.parameters():
        p.requires_grad_(False)
    return vgg.eval()


def step_mode(a):
    vgg = model(a.truncate)
    content = load_image(a.content, max_size=a.size)
    style = load_image(a.style, max_size=a.size, shape=content.shape[-2:])
    content_features = get_features(content, vgg)
    style_features = get_features(style, vgg)
    style_grams = {layer: gram_matrix(style_features[layer]) for layer in style_features}
    target = content.clone().requires_grad_(True)
    content_weight, style_weight = 1, 1e6
    evals = [0]

    def loss_of(target):
        # The seed's loop body.
        target_features = get_features(target, vgg)
        content_loss = torch.mean((target_features['conv4_2'] - content_features['conv4_2'])**2)
        style_loss = 0
        for layer in STYLE_WEIGHTS:
            target_feature = target_features[layer]
            _, d, h, w = target_feature.shape
            target_gram = gram_matrix(target_feature)
            style_gram = style_grams[layer]
            layer_style_loss = STYLE_WEIGHTS[layer] * torch.mean((target_gram - style_gram)**2)
            style_loss += layer_style_loss / (d * h * w)
        return content_weight * content_loss + style_weight * style_loss

    times, losses, evals_per_step = [], [], []
    if a.optimizer == "adam":
        optimizer = optim.Adam([target], lr=0.003)
        for ii in range(1, a.steps + 1):
            t0 = time.perf_counter()
            total_loss = loss_of(target)
            losses.append(total_loss.item())
            optimizer.zero_grad()
            total_loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - t0)
            evals_per_step.append(1)
    else:
        # The usual PyTorch use (the PyTorch style-transfer tutorial): step(closure) runs
        # max_iter iterations. Each step() call starts with one closure call at the current
        # point, so calling it with max_iter=1 per iteration would double the work; instead one
        # call does the warm-up iterations and a second the measured ones, and the measured
        # time starts after the second call's initial evaluation. Per-iteration times are the
        # spans between the ends of iterations (n_iter advancing, seen at each evaluation).
        # max_eval is lifted so only max_iter stops the run.
        optimizer = optim.LBFGS([target], lr=1, max_iter=a.warmup, max_eval=10**9, history_size=100,
                                tolerance_change=1e-9, line_search_fn="strong_wolfe")
        marks = []

        def closure():
            evals[0] += 1
            optimizer.zero_grad()
            loss = loss_of(target)
            loss.backward()
            st = optimizer.state[optimizer._params[0]]
            marks.append((time.perf_counter(), st.get("n_iter", 0), evals[0], loss.item()))
            return loss

        optimizer.step(closure)  # warm-up iterations (their first evaluation included)
        optimizer.param_groups[0]["max_iter"] = a.steps - a.warmup
        marks.clear()
        e0 = evals[0]
        optimizer.step(closure)
        # marks[0] is the redundant initial evaluation of the second call; n_iter counts from
        # the start of the run, so an iteration ends when the next mark shows a larger n_iter.
        # Iteration boundaries: the last evaluation before n_iter increases.
        ends = []
        for i in range(1, len(marks)):
            if i + 1 == len(marks) or marks[i + 1][1] > marks[i][1]:
                ends.append(marks[i][0])
        prev = marks[0][0]
        for t in ends:
            times.append(t - prev)
            prev = t
        times[:0] = [float("nan")] * a.warmup  # keep the warm-up slots, unmeasured
        losses.append(marks[-1][3])
        n_iter = len(ends)
        evals_per_step = [float("nan")] * a.warmup + [(evals[0] - e0 - 1) / max(1, n_iter)] * n_iter
    meas = times[a.warmup:]
    print(json.dumps({
        "side": "pytorch", "optimizer": a.optimizer, "size": a.size,
        "shape": list(content.shape[-2:]), "truncate": a.truncate,
        "steps": a.steps, "warmup": a.warmup, "threads": torch.get_num_threads(),
        "step_s": times, "median_s": statistics.median(meas),
        "evals_per_step": statistics.mean(evals_per_step[a.warmup:]),
        "final_loss": losses[-1], "peak_rss_mib": peak_rss_mib(),
    }))


def peak_mode(a):
    n = a.n
    x = torch.randn(n, n)
    y = torch.randn(n, n)
    torch.mm(x, y)  # warm-up
    ts = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        torch.mm(x, y)
        ts.append(time.perf_counter() - t0)
    med = statistics.median(ts)
    print(json.dumps({"side": "peak", "n": n, "threads": torch.get_num_threads(),
                      "median_s": med, "best_s": min(ts), "gflops_median": 2 * n**3 / med / 1e9,
                      "gflops_best": 2 * n**3 / min(ts) / 1e9}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["step", "peak"])
    ap.add_argument("--optimizer", choices=["adam", "lbfgs"], default="adam")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--content", help="content image (step mode; bench/prep_images.py makes them)")
    ap.add_argument("--style", help="style image (step mode)")
    ap.add_argument("--truncate", action="store_true",
                    help="cut VGG19 after conv5_1 (the seed runs all 37 modules, through conv5_4 and pool5)")
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.mode == "step":
        if not (a.content and a.style):
            ap.error("step mode needs --content and --style")
        if a.steps <= a.warmup:
            ap.error("--steps must exceed --warmup")
        step_mode(a)
    else:
        peak_mode(a)


if __name__ == "__main__":
    main()
