"""Forward and backward of one Gram matrix (the seed's gram_matrix and its loss), three ways.

nst computes F·Fᵀ with mm per image (transfer/torch/loss.go, gram). This times, on 2 threads,
the median of 12 runs of gram(F).square().sum() and its gradient with respect to F for:
  mm        the seed's view(d, h*w) then mm with its transpose (batch 1)
  bmm       one bmm over (B, d, h*w) and its transpose (what nst did before)
  unbind    unbind the batch, mm each image, stack (nst's batch path)

    python bench/gram.py            # shapes of VGG19's conv1_1 and conv2_1 at 128 and 256 px
"""
import argparse
import time

import torch


def g_mm(f):
    b, d, h, w = f.shape
    t = f.view(d, h * w)
    return torch.mm(t, t.t())


def g_bmm(f):
    b, d, h, w = f.shape
    t = f.view(b, d, h * w)
    return torch.bmm(t, t.transpose(1, 2))


def g_unbind(f):
    b, d, h, w = f.shape
    return torch.stack([torch.mm(t, t.t()) for t in f.view(b, d, h * w).unbind(0)])


def timed(g, shape, reps):
    x = torch.randn(*shape, requires_grad=True)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        y = g(x).square().sum()
        torch.autograd.grad(y, x)
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=12)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print("| shape (B, d, h, w) | mm ms | bmm ms | unbind+mm+stack ms |")
    print("|---|---|---|---|")
    for shape in [(1, 64, 128, 128), (1, 128, 64, 64), (1, 64, 256, 256), (1, 128, 128, 128),
                  (4, 64, 128, 128), (2, 64, 256, 256)]:
        mm = "%.2f" % (1000 * timed(g_mm, shape, a.reps)) if shape[0] == 1 else "-"
        print(f"| {shape} | {mm} | {1000 * timed(g_bmm, shape, a.reps):.2f} | {1000 * timed(g_unbind, shape, a.reps):.2f} |")


if __name__ == "__main__":
    main()
