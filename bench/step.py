"""Per-step benchmark, nst versus the seed's PyTorch loop, interleaved in one run.

For each repetition, optimiser and size it runs nst's BenchmarkStep (the compiled test binary,
one sub-benchmark per process, so peak RSS is per size) and bench/seed_bench.py (the seed's
loop; also cut after conv5_1 with --truncate, for Adam), alternating which side goes first,
then prints a markdown table of medians over repetitions and the ratio nst/PyTorch. Raw results
go to OUT/step.jsonl. Called by bench/run.sh; see docs/BENCHMARKS.md.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run_go(a, opt, size, steps, warm):
    env = dict(os.environ, NST_BENCH_DIR=a.images, NST_BENCH_THREADS=str(a.threads), NST_BENCH_WARMUP=str(warm))
    cmd = [a.test_bin, "-test.run", "^$", "-test.bench", f"^BenchmarkStep$/^{opt}$/^{size}$",
           "-test.benchtime", f"{steps - warm}x"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    m = re.search(r"BenchmarkStep/\S+\s+\d+\s+\d+ ns/op(.*)", out)
    if not m:
        raise RuntimeError(f"no benchmark line in:\n{out}")
    metrics = {unit: float(v) for v, unit in re.findall(r"([\d.e+-]+) (\S+)", m.group(1))}
    return {"median_s": metrics["s/step"], "peak_rss_mib": metrics.get("peak-RSS-MiB"), "gflops": metrics.get("GFLOP/s")}


def run_py(a, opt, size, steps, warm, truncate=False):
    cmd = [a.python, os.path.join(HERE, "seed_bench.py"), "step", "--optimizer", opt, "--size", str(size),
           "--steps", str(steps), "--warmup", str(warm), "--threads", str(a.threads),
           "--content", os.path.join(a.images, f"content-{size}.png"),
           "--style", os.path.join(a.images, f"style-{size}.png")]
    if truncate:
        cmd.append("--truncate")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--test-bin")
    ap.add_argument("--python")
    ap.add_argument("--images")
    ap.add_argument("--out")
    ap.add_argument("--report", nargs="+", metavar="STEP_JSONL",
                    help="only print the tables from earlier runs' step.jsonl files (repetitions renumbered)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="128,256,512")
    ap.add_argument("--optimizers", default="adam,lbfgs")
    ap.add_argument("--steps", default="128:9,256:5,512:3", help="size:steps (warm-up included)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--reps512", type=int, default=2)
    ap.add_argument("--no-truncated", action="store_true", help="skip the conv5_1-truncated PyTorch variant")
    a = ap.parse_args()
    if a.report:
        rows = []
        for i, path in enumerate(a.report):
            with open(path) as f:
                for line in f:
                    r = json.loads(line)
                    r["rep"] = 100 * i + r["rep"]
                    rows.append(r)
        report(rows, a.threads)
        return
    if not (a.test_bin and a.python and a.images and a.out):
        ap.error("--test-bin, --python, --images and --out are needed to run")
    sizes = [int(s) for s in a.sizes.split(",")]
    steps = {int(k): int(v) for k, v in (kv.split(":") for kv in a.steps.split(","))}
    rows = []
    with open(os.path.join(a.out, "step.jsonl"), "a") as log:
        for rep in range(a.reps):
            for opt in a.optimizers.split(","):
                for size in sizes:
                    if size >= 512 and rep >= a.reps512:
                        continue
                    n = steps[size]
                    sides = ["go", "py"] if rep % 2 == 0 else ["py", "go"]
                    if opt == "adam" and not a.no_truncated:
                        sides.append("py-trunc")
                    for side in sides:
                        l0, t0 = loadavg(), time.time()
                        if side == "go":
                            r = run_go(a, opt, size, n, a.warmup)
                        else:
                            r = run_py(a, opt, size, n, a.warmup, truncate=side == "py-trunc")
                        rec = {"rep": rep, "opt": opt, "size": size, "side": side, "median_s": r["median_s"],
                               "peak_rss_mib": r.get("peak_rss_mib"), "evals_per_step": r.get("evals_per_step"),
                               "load_before": l0, "load_after": loadavg(), "wall_s": time.time() - t0}
                        log.write(json.dumps(rec) + "\n")
                        log.flush()
                        print(json.dumps(rec), file=sys.stderr)
                        rows.append(rec)
    report(rows, a.threads)


def flops(size):
    # vggStepFLOPs in transfer/torch/bench_test.go, repeated here for the table.
    widths = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512]
    pool_after = {1, 3, 7, 11}
    style = {0, 2, 4, 8, 12}
    conv = gram = 0.0
    cin, s = 3, size
    for i, w in enumerate(widths):
        conv += 9 * cin * w * s * s
        if i in style:
            gram += w * w * s * s
        cin = w
        if i in pool_after:
            s //= 2
    return 2 * (conv + gram) + 2 * (conv + 2 * gram)


def report(rows, threads):
    med = lambda v: statistics.median(v) if v else float("nan")
    print(f"\n| optimiser | px | nst s/step | PyTorch (seed) s/step | nst / PyTorch | per-rep ratios | PyTorch cut at conv5_1 s/step | nst / cut | nst GFLOP/s | PyTorch evals/step | reps | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    keys = sorted({(r["opt"], r["size"]) for r in rows}, key=lambda k: (k[0] != "adam", k[1]))
    for opt, size in keys:
        sel = [r for r in rows if r["opt"] == opt and r["size"] == size]
        go = [r["median_s"] for r in sel if r["side"] == "go"]
        py = [r["median_s"] for r in sel if r["side"] == "py"]
        tr = [r["median_s"] for r in sel if r["side"] == "py-trunc"]
        # Per-repetition ratios (same moment, same load), then their median.
        reps = sorted({r["rep"] for r in sel})
        def ratio(side):
            out = []
            for rep in reps:
                g = [r["median_s"] for r in sel if r["rep"] == rep and r["side"] == "go"]
                p = [r["median_s"] for r in sel if r["rep"] == rep and r["side"] == side]
                if g and p:
                    out.append(g[0] / p[0])
            return out
        ev = [r["evals_per_step"] for r in sel if r["side"] == "py" and r["evals_per_step"]]
        loads = [r["load_before"] for r in sel] + [r["load_after"] for r in sel]
        gf = flops(size) / med(go) / 1e9 if opt == "adam" else float("nan")
        trs = f"{med(tr):.3f}" if tr else "-"
        trr = f"{med(ratio('py-trunc')):.2f}" if tr else "-"
        gfs = f"{gf:.0f}" if opt == "adam" else "-"
        print(f"| {opt} | {size} | {med(go):.3f} | {med(py):.3f} | **{med(ratio('py')):.2f}** | "
              f"{', '.join(f'{v:.2f}' for v in ratio('py'))} | {trs} | {trr} | {gfs} | "
              f"{med(ev):.2f} | {len(reps)} | {min(loads):.1f}-{max(loads):.1f} |")
    print("\n| px | nst peak RSS MiB (Adam / L-BFGS) | PyTorch peak RSS MiB (Adam / L-BFGS) |")
    print("|---|---|---|")
    for size in sorted({r["size"] for r in rows}):
        def rss(side, opt):
            v = [r["peak_rss_mib"] for r in rows if r["size"] == size and r["side"] == side and r["opt"] == opt and r["peak_rss_mib"]]
            return f"{max(v):.0f}" if v else "-"
        print(f"| {size} | {rss('go', 'adam')} / {rss('go', 'lbfgs')} | {rss('py', 'adam')} / {rss('py', 'lbfgs')} |")


if __name__ == "__main__":
    main()
