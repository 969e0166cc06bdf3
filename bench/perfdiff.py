"""Where a step's CPU goes, nst against the seed's loop cut at conv5_1, by subtraction.

Each side runs twice under `perf record` (999 Hz), once with N1 and once with N2 Adam steps, and
the samples of the short run are subtracted from the long one's, symbol by symbol, over N2 - N1:
what is left is one step's CPU in milliseconds (at 999 Hz a sample is ~1 ms of one thread),
with start-up, model building and the targets cancelled out. nst runs BenchmarkStep (the
engine's compiled test binary), PyTorch bench/seed_bench.py step --truncate; the runs alternate
sides. Libtorch's element-wise loops are named by their kernel (add_kernel, mul_kernel, ...).

    go test -c -o /tmp/torch.test ./transfer/torch
    python bench/perfdiff.py --test-bin /tmp/torch.test --python .venv-ref/bin/python \\
        --images <a folder with content-128.png and style-128.png> --size 128

Needs `perf` (linux-perf) and permission to record (kernel.perf_event_paranoid <= 2).
"""
import argparse
import collections
import os
import re
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def category(dso, sym):
    k = re.search(r"anonymous namespace\)::([a-z_0-9]+)", sym)
    if k and ("VectorizedLoop" in sym or "invoke_parallel" in sym or "loop_2d" in sym):
        return k.group(1)
    if dso.startswith("[JIT]"):
        return "oneDNN JIT kernels"
    if dso.startswith("libgomp"):
        return "libgomp (OpenMP spin and barriers)"
    if sym.startswith("mkl_blas"):
        return "MKL sgemm"
    if dso == "[kernel.kallsyms]":
        return "kernel"
    if dso.startswith("libpython") or dso.startswith("libtorch_python"):
        return "Python interpreter and bindings"
    if sym.startswith("runtime.") or sym.startswith("gotch") or "sugarme/gotch" in sym or sym.startswith("reflect."):
        return "Go runtime and gotch"
    return sym[:60]


def samples(path):
    out = subprocess.run(["perf", "report", "-i", path, "-n", "--no-children", "--sort", "dso,sym",
                          "--stdio", "-t", "|"], capture_output=True, text=True, check=True).stdout
    c = collections.Counter()
    for line in out.splitlines():
        f = line.split("|")
        if line.startswith("#") or len(f) < 4:
            continue
        c[category(f[2].strip(), f[3].strip()[4:])] += int(f[1].strip())
    return c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--test-bin", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", default="10,40", help="N1,N2 measured Adam steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=20)
    a = ap.parse_args()
    n1, n2 = (int(v) for v in a.steps.split(","))
    tmp = tempfile.mkdtemp(prefix="nst-perfdiff-")
    env = dict(os.environ, NST_BENCH_DIR=a.images, NST_BENCH_THREADS=str(a.threads), NST_BENCH_WARMUP="1")
    per = {"nst": {}, "pytorch": {}}
    for n in (n1, n2):
        for side in (("nst", "pytorch") if n == n1 else ("pytorch", "nst")):
            data = os.path.join(tmp, f"{side}-{n}.data")
            if side == "nst":
                cmd = [a.test_bin, "-test.run", "^$", "-test.bench", f"^BenchmarkStep$/^adam$/^{a.size}$",
                       "-test.benchtime", f"{n}x"]
            else:
                cmd = [a.python, os.path.join(HERE, "seed_bench.py"), "step", "--optimizer", "adam",
                       "--size", str(a.size), "--steps", str(n + 1), "--warmup", "1", "--threads", str(a.threads),
                       "--content", os.path.join(a.images, f"content-{a.size}.png"),
                       "--style", os.path.join(a.images, f"style-{a.size}.png"), "--truncate"]
            subprocess.run(["perf", "record", "-q", "-F", "999", "-o", data, "--"] + cmd, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            per[side][n] = samples(data)
    step = {side: {k: (c[n2][k] - c[n1][k]) / (n2 - n1) for k in set(c[n1]) | set(c[n2])} for side, c in per.items()}
    keys = sorted(set(step["nst"]) | set(step["pytorch"]),
                  key=lambda k: -max(abs(step["nst"].get(k, 0)), abs(step["pytorch"].get(k, 0))))
    print(f"CPU ms per Adam step at {a.size} px, {a.threads} threads (samples at 999 Hz over steps {n1 + 1}-{n2})\n")
    print("| where | nst | PyTorch cut at conv5_1 | nst - PyTorch |")
    print("|---|---|---|---|")
    tot = {s: sum(v for v in step[s].values()) for s in step}
    print(f"| **all** | **{tot['nst']:.1f}** | **{tot['pytorch']:.1f}** | **{tot['nst'] - tot['pytorch']:+.1f}** |")
    for k in keys[:a.rows]:
        g, p = step["nst"].get(k, 0), step["pytorch"].get(k, 0)
        print(f"| {k} | {g:.1f} | {p:.1f} | {g - p:+.1f} |")


if __name__ == "__main__":
    main()
