"""Time to quality at 256 px: wall time for nst's L-BFGS (and other schedules) to reach the
total loss that the seed's Adam (lr 0.003) reaches after --adam-steps steps, all through
`nst stylize` (full-width VGG19, random weights, 2 threads) on the same content and style.

nst's Adam matches the seed's PyTorch loop step for step (transfer/torch/parity_test.go), so
its loss after N steps is the seed's. The seed runs 2000 steps; on a loaded 2-core machine that
is ~half an hour or more, so the default target is Adam-300's loss (say so when quoting).
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
    ap.add_argument("--schedules", default="lbfgs,adam-lr0.02",
                    help="comma-separated: lbfgs, lbfgs-scales2, adam-lrX")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    adam, load = stylize(a, "adam", ["--optimizer", "adam", "--lr", "0.003", "--steps", str(a.adam_steps)])
    target = adam[-1]["total_loss"]
    rows = [("Adam lr 0.003 (the seed's)", adam[-1], len(adam), load)]
    for sch in a.schedules.split(","):
        if sch == "lbfgs":
            extra, label = ["--optimizer", "lbfgs", "--lr", "1", "--steps", str(a.max_lbfgs)], "L-BFGS lr 1, history 100"
        elif sch == "lbfgs-scales2":
            extra, label = ["--optimizer", "lbfgs", "--lr", "1", "--steps", str(a.max_lbfgs // 2), "--scales", "2"], "L-BFGS, 2-level pyramid (128 then 256 px)"
        elif sch.startswith("adam-lr"):
            lr = sch[len("adam-lr"):]
            extra, label = ["--optimizer", "adam", "--lr", lr, "--steps", str(a.adam_steps)], f"Adam lr {lr}"
        else:
            sys.exit(f"unknown schedule {sch}")
        steps, load = stylize(a, sch, extra)
        # On a pyramid only the last level's loss is comparable.
        last = max(s.get("scale", 0) for s in steps)
        hit = first_at([s for s in steps if s.get("scale", 0) == last], target)
        rows.append((label, hit, len(steps), load))

    print(f"\nTarget: total loss {target:.6g} = the seed's Adam (lr 0.003) after {a.adam_steps} steps, {a.size} px, "
          f"{a.threads} threads (the seed runs 2000 steps)\n")
    print("| schedule | steps to target | wall s to target | vs Adam | steps run | load avg |")
    print("|---|---|---|---|---|---|")
    base = adam[-1]["elapsed_s"]
    for label, hit, n, (l0, l1) in rows:
        if hit is None:
            print(f"| {label} | not reached | - | - | {n} | {l0:.1f}-{l1:.1f} |")
        else:
            print(f"| {label} | {hit['step']} | {hit['elapsed_s']:.1f} | **{base / hit['elapsed_s']:.1f}x faster** | {n} | {l0:.1f}-{l1:.1f} |")


if __name__ == "__main__":
    main()
