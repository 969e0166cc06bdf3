"""How far a bf16 loss is from the fp32 loss of the same image, along an L-BFGS run on the bf16
objective. A bf16 candidate in bench/ttq.py reaches its target by its own loss, computed with
bfloat16 convolutions; the seed's target is an fp32 loss. This runs torch.optim.LBFGS (lr 1,
history 50, strong Wolfe, torch's first step) on bench/ttq_torch.py's bf16 objective and, at
every iteration, evaluates the same image in fp32 too. PyTorch with its own random VGG19 (seed
0), not nst's, so the figures say how large the gap is at a given loss, not nst's exact gap.

Usage: bf16_loss.py [--images DIR] [--size 512] [--iters 40] [--threads 2]
  (DIR: bench/prep_images.py's content-<px>.png and style-<px>.png; without it, ttq_torch.py's
  synthetic pictures)
Prints one JSON object per iteration: iter, bf16 loss, fp32 loss of the same image, fp32/bf16.
"""
import argparse
import json

import torch

import ttq_torch as tt
from variants import vgg19_to_conv5_1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    vgg = vgg19_to_conv5_1().eval()
    for p in vgg.parameters():
        p.requires_grad_(False)
    c = tt.normalise(tt.load(a.images, "content", a.size))
    s = tt.normalise(tt.load(a.images, "style", a.size))
    bf16 = tt.Problem(vgg, c, s, True, False, "cpu")
    fp32 = tt.Problem(vgg, c, s, False, False, "cpu")
    x = c.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=1, history_size=50, tolerance_grad=1e-7,
                            tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = bf16.loss(x)
        loss.backward()
        return loss

    for it in range(a.iters + 1):
        with torch.no_grad():
            lb, lf = bf16.loss(x).item(), fp32.loss(x).item()
        print(json.dumps({"iter": it, "bf16": lb, "fp32": lf, "fp32_over_bf16": lf / lb}), flush=True)
        if it < a.iters:
            opt.step(closure)


if __name__ == "__main__":
    main()
