"""Batch throughput and memory of `nst run` on file://, versus one fresh `nst stylize` process
per pair (the seed's way: a process, a model load and the style's targets for every pair).

  batch   CONTENTS x STYLES pairs, interleaved: nst run (worker processes, the default), nst run
          --in-process, and the naive loop; pairs per hour, ratio, and the busy share
          (user+sys CPU seconds of the whole process tree / (wall x cores)).
  rss     one 200-pair (by default) nst run, RSS of the process tree polled every 0.25 s against
          pairs done (provenance files written), in worker mode and with --in-process.

Inputs are generated into a temporary folder: random square crops of the JPEG/PNG photos in
--photos DIR (bench/run.sh passes $BENCH_PHOTOS) if given, else synthetic pictures; nothing is committed. Prints markdown; raw samples go to --out.
"""
import argparse
import glob
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from PIL import Image, ImageDraw


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def make_inputs(root, n_contents, n_styles, size, photo_dir=None):
    rng = random.Random(0)
    cdir, sdir = os.path.join(root, "contents"), os.path.join(root, "styles")
    os.makedirs(cdir, exist_ok=True)
    os.makedirs(sdir, exist_ok=True)
    photos = []
    if photo_dir:
        photos = sorted(p for p in glob.glob(os.path.join(photo_dir, "*"))
                        if p.lower().endswith((".jpg", ".jpeg", ".png")))
        if not photos:
            sys.exit(f"batch.py: no .jpg/.jpeg/.png in --photos {photo_dir}")
    opened = [Image.open(p).convert("RGB") for p in photos]

    def picture(i):
        if opened:
            im = opened[i % len(opened)]
            w, h = im.size
            m = rng.randint(min(w, h) // 2, min(w, h))
            x, y = rng.randint(0, w - m), rng.randint(0, h - m)
            return im.crop((x, y, x + m, y + m)).resize((size, size), Image.BICUBIC)
        im = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
        d = ImageDraw.Draw(im)
        for _ in range(8):
            x0, y0 = rng.randrange(size), rng.randrange(size)
            d.ellipse((x0, y0, x0 + rng.randrange(8, size // 2), y0 + rng.randrange(8, size // 2)),
                      fill=tuple(rng.randrange(256) for _ in range(3)))
        return im

    for i in range(n_contents):
        picture(i).save(os.path.join(cdir, f"c{i:04d}.png"))
    for j in range(n_styles):
        picture(1000 + j).save(os.path.join(sdir, f"s{j}.png"))
    return sorted(glob.glob(os.path.join(cdir, "*.png"))), sorted(glob.glob(os.path.join(sdir, "*.png")))


def manifest(root, out, size, steps, lr):
    path = os.path.join(root, f"batch-{os.path.basename(out)}.yaml")
    with open(path, "w") as f:
        f.write(f"""apiVersion: nst/v1
kind: StyleBatch
metadata: {{name: bench}}
spec:
  model: {{weights: random, randomSeed: 0}}
  inputs:
    contents: {{url: "file://{root}/contents/", include: ["*.png"]}}
    styles: {{url: "file://{root}/styles/"}}
    pairing: cross
  params: {{size: {size}, steps: {steps}, optimizer: adam, lr: {lr}}}
  presets: [{{name: default}}]
  output: {{url: "file://{out}/?create_dir=true", format: png}}
""")
    return path


def tree_rss(root_pid):
    """RSS (MiB) of root_pid and its descendants: total, and the largest single process."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    total = biggest = 0.0
    stack = [root_pid]
    while stack:
        p = stack.pop()
        stack.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        kb = float(line.split()[1]) / 1024
                        total += kb
                        biggest = max(biggest, kb)
        except OSError:
            pass
    return total, biggest


def timed(cmd_lists, poll=None, done_dir=None):
    """Runs the commands one after another; returns wall, CPU of the process trees, samples."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    samples = []
    for cmd in cmd_lists:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while p.poll() is None:
            if poll:
                total, biggest = tree_rss(p.pid)
                done = len(glob.glob(os.path.join(done_dir, "default", "*.json"))) if done_dir else 0
                samples.append({"t": time.time() - t0, "rss_tree_mib": total, "rss_max_proc_mib": biggest, "pairs_done": done})
                time.sleep(poll)
            else:
                time.sleep(0.02)
        err = p.stderr.read()
        if p.returncode != 0:
            raise RuntimeError(f"{cmd[:3]} exited {p.returncode}: {err[-2000:]}")
    wall = time.time() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, samples


def batch_mode(a):
    root = tempfile.mkdtemp(prefix="nst-bench-batch-")
    contents, styles = make_inputs(root, a.contents, a.styles, a.size, a.photos)
    pairs = [(c, s) for c in contents for s in styles]
    rows = []
    for rep in range(a.reps):
        modes = ["run", "run-inproc", "naive"]
        if rep % 2:
            modes.reverse()
        for mode in modes:
            out = os.path.join(root, f"out-{mode}-{rep}")
            os.makedirs(out, exist_ok=True)
            l0 = loadavg()
            if mode == "naive":
                cmds = [[a.nst, "stylize", "--quiet", "--content", c, "--style", s,
                         "--out", os.path.join(out, f"{os.path.basename(c)[:-4]}__{os.path.basename(s)[:-4]}.png"),
                         "--random-weights", "--device", "cpu", "--threads", str(a.cores),
                         "--size", str(a.size), "--steps", str(a.steps), "--optimizer", "adam", "--lr", str(a.lr)]
                        for c, s in pairs]
            else:
                m = manifest(root, out, a.size, a.steps, a.lr)
                cmds = [[a.nst, "run", "--quiet", "--manifest", m, "--device", "cpu"] + (["--in-process"] if mode == "run-inproc" else [])]
            wall, cpu, _ = timed(cmds)
            rec = {"rep": rep, "mode": mode, "pairs": len(pairs), "wall_s": wall, "cpu_s": cpu,
                   "pairs_per_hour": len(pairs) / wall * 3600, "busy": cpu / (wall * a.cores),
                   "load_before": l0, "load_after": loadavg()}
            print(json.dumps(rec), file=sys.stderr)
            rows.append(rec)
    with open(os.path.join(a.out, "batch.jsonl"), "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    med = lambda v: statistics.median(v)
    print(f"\n{len(pairs)} pairs ({a.contents} contents x {a.styles} styles), {a.size} px, Adam {a.steps} steps, {a.cores} threads; medians of {a.reps} interleaved repetitions\n")
    print("| mode | wall s | pairs/hour | speed-up vs naive | CPU s per pair | busy share (CPU s / (wall x cores)) | load avg |")
    print("|---|---|---|---|---|---|---|")
    names = {"naive": "naive: `nst stylize` per pair (fresh process)", "run": "`nst run` (worker processes)",
             "run-inproc": "`nst run --in-process`"}
    for mode in ["naive", "run", "run-inproc"]:
        sel = [r for r in rows if r["mode"] == mode]
        sp = [r["pairs_per_hour"] / n["pairs_per_hour"] for r in sel for n in rows if n["mode"] == "naive" and n["rep"] == r["rep"]]
        loads = [r["load_before"] for r in sel] + [r["load_after"] for r in sel]
        print(f"| {names[mode]} | {med([r['wall_s'] for r in sel]):.1f} | {med([r['pairs_per_hour'] for r in sel]):.0f} | "
              f"**{med(sp):.2f}x** | {med([r['cpu_s'] / r['pairs'] for r in sel]):.2f} | {med([r['busy'] for r in sel]):.2f} | {min(loads):.1f}-{max(loads):.1f} |")


def rss_mode(a):
    root = tempfile.mkdtemp(prefix="nst-bench-rss-")
    make_inputs(root, a.contents, a.styles, a.size, a.photos)
    n = a.contents * a.styles
    print(f"\n{n} pairs in one `nst run`, {a.size} px, Adam {a.steps} steps; RSS polled every {a.poll} s\n")
    print("| mode | wall s | tree RSS MiB at 15% of pairs | at 45% | at 65% | at 95% | peak | growth of the engine process, MiB per 100 pairs, 15-45% / 65-95% | engine process peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode in ["run", "run-inproc"]:
        out = os.path.join(root, f"out-{mode}")
        os.makedirs(out, exist_ok=True)
        m = manifest(root, out, a.size, a.steps, a.lr)
        cmd = [a.nst, "run", "--quiet", "--manifest", m, "--device", "cpu"] + (["--in-process"] if mode == "run-inproc" else [])
        wall, cpu, samples = timed([cmd], poll=a.poll, done_dir=out)
        with open(os.path.join(a.out, f"rss-{mode}.jsonl"), "w") as f:
            for s in samples:
                f.write(json.dumps(s) + "\n")

        print(rss_row(mode, wall, samples, n))


def rss_row(mode, wall, samples, n):
    """One table row: tree RSS at points of the run, and growth over two windows that avoid
    each worker's first pairs (its warm-up) and the recycling at 100 pairs."""
    def at(frac):
        v = [s for s in samples if s["pairs_done"] >= frac * n]
        return v[0] if v else None

    def growth(f0, f1, key):
        s0, s1 = at(f0), at(f1)
        if not s0 or not s1 or s1["pairs_done"] == s0["pairs_done"]:
            return float("nan")
        return (s1[key] - s0[key]) / (s1["pairs_done"] - s0["pairs_done"]) * 100

    cells = [f"{at(f)['rss_tree_mib']:.0f}" if at(f) else "-" for f in (0.15, 0.45, 0.65, 0.95)]
    name = "`nst run` (workers, recycled every 100 pairs)" if mode == "run" else "`nst run --in-process`"
    return (f"| {name} | {wall:.0f} | " + " | ".join(cells) +
            f" | {max(s['rss_tree_mib'] for s in samples):.0f} | {growth(0.15, 0.45, 'rss_max_proc_mib'):+.1f} / "
            f"{growth(0.65, 0.95, 'rss_max_proc_mib'):+.1f} | {max(s['rss_max_proc_mib'] for s in samples):.0f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["batch", "rss"])
    ap.add_argument("--nst", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--contents", type=int, default=16)
    ap.add_argument("--styles", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--poll", type=float, default=0.25)
    ap.add_argument("--photos", help="a folder of JPEG/PNG photos to crop inputs from (default: synthetic pictures)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    batch_mode(a) if a.mode == "batch" else rss_mode(a)


if __name__ == "__main__":
    main()
