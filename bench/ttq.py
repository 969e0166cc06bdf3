"""Time to quality at 256 px: wall time for nst's L-BFGS (and other schedules) to reach the
total loss that the seed's Adam (lr 0.003) reaches after --adam-steps steps, all through
`nst stylize` (full-width VGG19, random weights, 2 threads) on the same content and style.

nst's Adam matches the seed's PyTorch loop step for step (transfer/torch/parity_test.go), so
its loss after N steps is the seed's. The seed runs 2000 steps; on a loaded 2-core machine that
is ~half an hour or more, so targets are Adam's loss at 100, 250, 500, 1000 and 2000 steps, as far as --adam-steps goes.
Each schedule's time is the loss log's elapsed_s at the first step at or below the target
(it includes the content/style targets, as a user sees it). Prints markdown; logs go to --out.
"""
import argparse
import json
import os
import subprocess
import sys


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def stylize(a, name, extra):
    log = os.path.join(a.out, f"ttq-{name}.jsonl")
    cmd = [a.nst, "stylize", "--quiet", "--content", a.content, "--style", a.style,
           "--out", os.path.join(a.out, f"ttq-{name}.png"), "--loss-log", log,
           "--random-weights", "--device", "cpu", "--threads", str(a.threads), "--size", str(a.size)] + extra
    l0 = loadavg()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(log) as f:
        steps = [json.loads(line) for line in f if line.strip()]
    return steps, (l0, loadavg())


def first_at(steps, target):
    for s in steps:
        if s["total_loss"] <= target:
            return s
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nst", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--content", required=True)
    ap.add_argument("--style", required=True)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--adam-steps", type=int, default=300)
    ap.add_argument("--max-lbfgs", type=int, default=200)
    ap.add_argument("--schedules", default="lbfgs",
                    help="comma-separated: lbfgs, adam-lrX (X the learning rate)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    # The other schedules first: if the long Adam run is cut short, the milestones it reached
    # still have figures (the loss log is written as it goes).
    runs = []
    for sch in a.schedules.split(","):
        if sch == "lbfgs":
            extra, label = ["--optimizer", "lbfgs", "--lr", "1", "--steps", str(a.max_lbfgs)], "L-BFGS lr 1, history 100"
        elif sch.startswith("adam-lr"):
            lr = sch[len("adam-lr"):]
            extra, label = ["--optimizer", "adam", "--lr", lr, "--steps", str(a.adam_steps)], f"Adam lr {lr}"
        else:
            sys.exit(f"unknown schedule {sch}")
        steps, load = stylize(a, sch, extra)
        runs.append((label, steps, load))
    adam, aload = stylize(a, "adam", ["--optimizer", "adam", "--lr", "0.003", "--steps", str(a.adam_steps)])
    report(a, adam, aload, runs)


def report(a, adam, aload, runs):
    milestones = [k for k in (100, 250, 500, 1000, 2000) if k <= len(adam)] or [len(adam)]
    if len(adam) not in milestones:
        milestones.append(len(adam))
    print(f"\nTargets: the total loss of the seed's Adam (lr 0.003; nst's Adam matches it step for step) "
          f"after k steps, {a.size} px, {a.threads} threads, full-width VGG19 (random weights). "
          f"Wall times are the loss log's elapsed_s (targets included). Load average {aload[0]:.1f}-{aload[1]:.1f} during Adam.\n")
    print("| Adam steps k | target loss | Adam wall s | " + " | ".join(f"{label}: steps, wall s, speed-up" for label, _, _ in runs) + " |")
    print("|---|---|---|" + "---|" * len(runs))
    for k in milestones:
        target, t_adam = adam[k - 1]["total_loss"], adam[k - 1]["elapsed_s"]
        cells = []
        for _, steps, _ in runs:
            hit = first_at(steps, target)
            cells.append("not reached" if hit is None else f"{hit['step']}, {hit['elapsed_s']:.1f}, **{t_adam / hit['elapsed_s']:.0f}x**")
        print(f"| {k} | {target:.6g} | {t_adam:.1f} | " + " | ".join(cells) + " |")
    for label, steps, (l0, l1) in runs:
        print(f"\n{label}: {len(steps)} steps, final loss {steps[-1]['total_loss']:.6g} at {steps[-1]['elapsed_s']:.1f} s; load {l0:.1f}-{l1:.1f}")


if __name__ == "__main__":
    main()
