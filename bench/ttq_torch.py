"""Time to quality in PyTorch, for a machine where nst's binary cannot run (a GPU machine with
its own PyTorch and no registry: bench/gpu.sh). The same candidates as bench/ttq.py, on the
seed's objective (VGG19 to conv5_1, random weights, content conv4_2, style conv1_1..conv5_1 with
the seed's weights, alpha 1, beta 1e6), written the way nst computes them:

  adam              the seed's loop: torch.optim.Adam, lr 0.003, from the content
  lbfgs<H>          torch.optim.LBFGS(lr 1, history H, strong Wolfe), one iteration per logged step
  c2f<L>-<s>[-<s>]-h<H>  L levels coarse to fine (each half the next one's side, the coarser ones
                    running the given iterations, each level starting from the previous result
                    upsampled bilinearly), L-BFGS history H
  schedule:<name>   a named schedule of nst's (SCHEDULES below: transfer/schedule.go's values,
                    checked by transfer.TestSchedulesMatchTheGPUBenchmark)
  +bf16, +cl        bfloat16 autocast around VGG19, channels-last weights and image
  +norm             L-BFGS's first step at each level lr/|g| (nst's --first-step norm) instead
                    of torch's lr*min(1, 1/sum|g|)
  +carry            lr times the H_diag the coarser level ended with (nst's --first-step carry;
                    +norm's step at the first level)

It writes the records bench/ttq.py reads (`ttq.py report --out DIR` prints the tables): the
reference (Adam, --adam-steps steps, run here: on a GPU 2000 steps take seconds), Adam probes,
and each candidate's per-iteration log (step, scale, total_loss, elapsed_s from the start
including the targets). L-BFGS iterations are logged at the iterate each one starts from, as
nst's log does; the CUDA stream is synchronised at every log point (the loss is read back).

Inputs: content-<px>.png and style-<px>.png from --images (bench/prep_images.py; needs PIL), or
without --images the same synthetic pictures drawn in torch (no numpy or PIL needed; the noise
differs from prep_images.py's, so losses are not comparable with the CPU tables, timings are).

Usage: ttq_torch.py --out DIR [--device cuda] [--sizes 512,1024] [--candidates ...] [--budgets 1,3,10]
"""
import argparse
import json
import math
import os
import signal
import sys
import time

import torch
import torch.nn.functional as F

import ttq  # bench/ttq.py: the targets and the report
from variants import vgg19_to_conv5_1  # bench/variants.py: the seed's VGG19 cut at conv5_1

STYLE = {0: 1., 5: 0.8, 10: 0.5, 19: 0.3, 28: 0.1}  # module index in features: weight
CONTENT = 21
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

# nst's named schedules (transfer/schedule.go), one JSON object per line: the Go test
# TestSchedulesMatchTheGPUBenchmark reads these lines.
SCHEDULES = {
    "fast": json.loads('{"optimizer": "lbfgs", "lr": 1, "history": 50, "steps": 100, "scales": 2, "scaleSteps": [10], "stopTolerance": 0.001, "stopWindow": 10, "firstStep": "carry"}'),  # schedule fast
}



def features(vgg, x, bf16, dev):
    out = {}
    with torch.autocast(dev.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
        for i, layer in enumerate(vgg):
            x = layer(x)
            if i in STYLE or i == CONTENT:
                out[i] = x
    return {k: v.float() for k, v in out.items()}


def gram(f):
    # As nst computes it (transfer/torch/loss.go): mm per image, not one bmm, whose backward
    # sums a transposed gradient (bench/gram.py).
    b, d, h, w = f.shape
    return torch.stack([torch.mm(t, t.t()) for t in f.reshape(b, d, h * w).unbind(0)])


class Problem:
    """One level's objective: the seed's loss against the content's and style's targets."""

    def __init__(self, vgg, content, style, bf16, cl, dev):
        self.vgg, self.bf16, self.cl, self.dev = vgg, bf16, cl, dev
        with torch.no_grad():
            fc = features(vgg, self.fmt(content), bf16, dev)
            fs = features(vgg, self.fmt(style), bf16, dev)
        self.content = fc[CONTENT]
        self.grams = {i: gram(fs[i]) for i in STYLE}

    def fmt(self, x):
        return x.contiguous(memory_format=torch.channels_last) if self.cl else x

    def loss(self, x):
        f = features(self.vgg, self.fmt(x), self.bf16, self.dev)
        content = ((f[CONTENT] - self.content) ** 2).mean()
        style = 0
        for i, w in STYLE.items():
            _, d, h, ww = f[i].shape
            style = style + w * ((gram(f[i]) - self.grams[i]) ** 2).mean() / (d * h * ww)
        return content + 1e6 * style


# --- inputs ------------------------------------------------------------------------------------

def synthetic(kind, n):
    """bench/prep_images.py's synthetic content / style, drawn in torch (RGB in [0, 1], 1x3xnxn)."""
    g = torch.Generator().manual_seed(1 if kind == "content" else 2)
    y, x = torch.meshgrid(torch.linspace(0, 1, n, dtype=torch.float64), torch.linspace(0, 1, n, dtype=torch.float64), indexing="ij")
    if kind == "content":
        ridge = 0.55 + 0.06 * torch.sin(x * 11) + 0.03 * torch.sin(x * 37 + 1)
        sky = torch.stack([0.45 + 0.4 * y, 0.65 + 0.25 * y, 0.95 - 0.1 * y], -1)
        ground = torch.stack([0.15 + 0.3 * x, 0.45 + 0.4 * (y - ridge), 0.2 + 0.1 * x], -1)
        img = torch.where((y < ridge)[..., None], sky, ground)
        img[(x - 0.75) ** 2 + (y - 0.2) ** 2 < 0.08 ** 2] = torch.tensor([1.0, 0.85, 0.3], dtype=torch.float64)
        img[(torch.abs(x - 0.3) < 0.08) & (y > 0.6) & (y < 0.75)] = torch.tensor([0.7, 0.25, 0.2], dtype=torch.float64)
        img[(y > 0.52) & (y <= 0.6) & (torch.abs(x - 0.3) < (y - 0.52) * 1.2)] = torch.tensor([0.3, 0.2, 0.2], dtype=torch.float64)
        img = img + 0.03 * torch.randn(img.shape, generator=g, dtype=torch.float64)
    else:
        angle = 6 * torch.sin(3 * x) + 5 * torch.cos(4 * y)
        stroke = torch.sin(60 * (x * torch.cos(angle) + y * torch.sin(angle)))
        palette = torch.tensor([[0.1, 0.2, 0.55], [0.95, 0.8, 0.2], [0.2, 0.45, 0.8], [0.05, 0.1, 0.3]], dtype=torch.float64)
        img = palette[((stroke + 1) * 2).long().clamp(0, 3)]
        checks = ((x * n // 16).long() + (y * n // 16).long()) % 2
        img = 0.85 * img + 0.15 * checks[..., None]
        img = img + 0.04 * torch.randn(img.shape, generator=g, dtype=torch.float64)
    img = (img.clamp(0, 1) * 255).round() / 255
    return img.permute(2, 0, 1).unsqueeze(0).float()


def load(images, kind, size):
    if images:
        from PIL import Image  # only with --images
        im = Image.open(os.path.join(images, f"{kind}-{size}.png")).convert("RGB")
        t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(size, size, 3)
        # contiguous: a permuted image's gradient is too, and torch.optim.LBFGS views it flat
        return t.permute(2, 0, 1).unsqueeze(0).float().contiguous() / 255
    return F.interpolate(synthetic(kind, 1024), size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


def normalise(img):
    return (img - MEAN) / STD


def down(img, side):
    return F.interpolate(img, size=(side, side), mode="bilinear", antialias=True, align_corners=False)


# --- schedules ---------------------------------------------------------------------------------

def parse(cand):
    base, *mods = cand.split("+")
    s = {"bf16": "bf16" in mods, "cl": "cl" in mods, "scales": 1, "scaleSteps": [], "stopTolerance": 0, "stopWindow": 0,
         "firstStep": "carry" if "carry" in mods else "norm" if "norm" in mods else "torch"}
    if base == "adam":
        s.update(optimizer="adam", lr=0.003, history=0)
    elif base.startswith("lbfgs"):
        s.update(optimizer="lbfgs", lr=1, history=int(base[5:]))
    elif base.startswith("c2f"):
        parts = base[3:].split("-")
        s.update(optimizer="lbfgs", lr=1, history=int(parts[-1][1:]), scales=int(parts[0]), scaleSteps=[int(p) for p in parts[1:-1]])
    elif base.startswith("schedule:"):
        s.update(SCHEDULES[base[len("schedule:"):]])
    else:
        sys.exit(f"ttq_torch: unknown candidate {cand}")
    return s


class Timeout(Exception):
    pass


def optimise(a, vgg, size, s, limit, steps_last):
    """Runs schedule s at size; returns nst-style log lines."""
    dev = a.device
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    content, style = load(a.images, "content", size), load(a.images, "style", size)
    levels = max(s["scales"], 1)
    log = []
    sync()
    t0 = time.perf_counter()
    x = None
    carried = None  # the H_diag the last level's L-BFGS ended with (firstStep carry)
    try:
        for lv in range(levels):
            side = size >> (levels - 1 - lv)
            c = normalise(down(content, side) if side != size else content).to(dev)
            st = normalise(down(style, side) if side != size else style).to(dev)
            pr = Problem(vgg, c, st, s["bf16"], s["cl"], dev)
            x = c.clone() if x is None else F.interpolate(x.detach(), size=(side, side), mode="bilinear", align_corners=False)
            x.requires_grad_(True)
            n = s["scaleSteps"][lv] if lv < len(s["scaleSteps"]) else steps_last
            scale = lv + 1 if levels > 1 else None
            level_log = []

            def record(loss):
                sync()
                rec = {"step": len(log) + 1, "total_loss": loss, "elapsed_s": time.perf_counter() - t0}
                if scale:
                    rec["scale"] = scale
                log.append(rec)
                level_log.append(rec)
                if limit and rec["elapsed_s"] >= limit:
                    raise Timeout
                w, tol = s["stopWindow"], s["stopTolerance"]
                if tol > 0 and len(level_log) > w:
                    before = level_log[-1 - w]["total_loss"]
                    return (before - loss) / abs(before) < tol if before else True
                return False

            if s["optimizer"] == "adam":
                opt = torch.optim.Adam([x], lr=s["lr"])
                for _ in range(n):
                    loss = pr.loss(x)
                    stop = record(loss.item())
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    if stop:
                        break
            else:
                # One step(closure) call for the level; the closure sees each evaluation, and the
                # loss at the start of each iteration is its first evaluation after n_iter moved.
                opt = torch.optim.LBFGS([x], lr=s["lr"], max_iter=n, max_eval=n * 100, history_size=s["history"],
                                        tolerance_grad=1e-7, tolerance_change=1e-9, line_search_fn="strong_wolfe")
                seen = [-1]
                first = s["firstStep"]
                if first == "carry" and carried is None:
                    first = "norm"  # nst's carry at the first level
                # (x, loss, grad) of the last evaluations, kept only where the first step is run
                # alone (firstStep below): other candidates pay no copies
                cache = [] if first in ("norm", "carry") else None

                class Stop(Exception):
                    pass

                def closure():
                    opt.zero_grad()
                    hit = next((c for c in cache if torch.equal(c[0], x.detach())), None) if cache else None
                    if hit:
                        loss, x.grad = hit[1], hit[2].clone()
                    else:
                        loss = pr.loss(x)
                        loss.backward()
                        if cache is not None:
                            cache[:] = cache[-3:] + [(x.detach().clone(), loss.detach(), x.grad.clone())]
                    it = opt.state[opt._params[0]].get("n_iter", 0)
                    if it != seen[0]:
                        seen[0] = it
                        if record(loss.item()):
                            raise Stop
                    return loss
                try:
                    if first in ("norm", "carry") and n > 1:
                        # torch.optim.LBFGS's first step is lr*min(1, 1/sum|g|) with no choice: run
                        # its first iteration alone with lr scaled to make that lr/|g| (norm) or
                        # lr*carried (carry), then the rest at lr. The cache answers the
                        # evaluations the second call repeats (its start, at the point the first
                        # ended on), so this costs what nst's does.
                        closure()
                        g = x.grad
                        l1, l2 = g.abs().sum().item(), g.norm().item()
                        t = s["lr"] / l2 if first == "norm" else s["lr"] * carried
                        opt.param_groups[0].update(lr=t / min(1.0, 1.0 / l1), max_iter=1)
                        opt.step(closure)
                        opt.param_groups[0].update(lr=s["lr"], max_iter=n - 1)
                    opt.step(closure)
                except Stop:
                    pass
                st = opt.state[opt._params[0]]
                carried = float(st["H_diag"]) if st.get("old_dirs") else None
    except Timeout:
        return log, True
    return log, False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--images")
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--adam-steps", type=int, default=2000)
    ap.add_argument("--probe-steps", type=int, default=20)
    ap.add_argument("--candidates", default="lbfgs100,schedule:fast")
    ap.add_argument("--budgets", default="1,3,10")
    ap.add_argument("--limit", type=float, default=0, help="seconds after which a candidate stops (default: the largest budget)")
    ap.add_argument("--steps", type=int, default=100000, help="iterations of the last level (the limit ends them first)")
    ap.add_argument("--reps", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    limit = a.limit or max(float(b) for b in a.budgets.split(","))
    torch.manual_seed(0)
    vggs = {}
    for cl in (False, True):
        torch.manual_seed(0)
        m = vgg19_to_conv5_1().to(a.device).eval()
        for p in m.parameters():
            p.requires_grad_(False)
        vggs[cl] = m.to(memory_format=torch.channels_last) if cl else m
    info = {"torch": torch.__version__, "device": a.device}
    if a.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    with open(os.path.join(a.out, "ttq.jsonl"), "a") as raw:
        for size in [int(s) for s in a.sizes.split(",")]:
            # Warm-up (cuDNN autotuning, oneDNN primitives) off the clock.
            for cl in (False, True):
                optimise(a, vggs[cl], size, parse("adam+cl" if cl else "adam"), 0, 2)
            ref, _ = optimise(a, vggs[False], size, parse("adam"), 0, a.adam_steps)
            tg = ttq.targets(ref)  # the 2000-step loss extrapolated if --adam-steps is shorter
            rec = {"kind": "reference", "size": size, "steps": len(ref), "elapsed_s": ref[-1]["elapsed_s"], "first_s": ref[0]["elapsed_s"],
                   "targets": tg, "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_start": 0, "load_end": 0,
                   "nst": "ttq_torch.py", "cpu": "", "image": "", **info}
            raw.write(json.dumps(rec) + "\n")
            cands = [c for c in a.candidates.split(",") if c]
            for rep in range(a.reps):
                order = cands[rep % len(cands):] + cands[:rep % len(cands)]
                for name in ["adam-probe"] + order + ["adam-probe"]:
                    s = parse("adam" if name == "adam-probe" else name)
                    w0 = time.time()
                    steps, cancelled = optimise(a, vggs[s["cl"]], size, s, 0 if name == "adam-probe" else limit,
                                                a.probe_steps if name == "adam-probe" else a.steps)
                    flags = ["--scales", str(s["scales"])] if s["scales"] > 1 else []
                    raw.write(json.dumps({"kind": "probe" if name == "adam-probe" else "candidate", "size": size, "rep": rep, "name": name,
                                          "flags": flags, "levels": s["scales"], "cancelled": cancelled, "load_before": 0, "load_after": 0,
                                          "wall_s": time.time() - w0, "steps": steps}) + "\n")
                    raw.flush()
                    print(f"ttq_torch: {size} px {name}: {len(steps)} steps, last {steps[-1]['total_loss']:.6g} at {steps[-1]['elapsed_s']:.2f} s",
                          file=sys.stderr)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    main()
