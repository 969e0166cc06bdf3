"""Time to quality: how soon each candidate schedule reaches the total loss that the seed's Adam
(lr 0.003, content init, 2000 steps) reaches, at each size, all through `nst stylize` (full-width
VGG19, random weights, CPU, --threads) on the same content and style. See docs/BENCHMARKS.md.

The reference. nst's Adam is the seed's loop to within 1e-5 at every step
(transfer/torch/parity_test.go), so its loss log is the seed's loss curve. It runs once per size
and input pair and is cached (--cache; 2000 steps at 512 px take the better part of an hour on
2 idle threads). Its curve is deterministic and does not depend on the thread count beyond the
order of floating-point sums, so it may be made with --ref-threads 1 beside other work
(`ttq.py reference` makes only the references); its wall time is never used: the Adam time a
candidate is compared with comes from a short Adam run made in the same repetition as the
candidates (interleaved, same load): t_adam(k) = the probe's first step (content and style
targets included) + (k - 1) x its median step. Every Adam step does the same work, so this is
the long run's time without the load it happened to meet. The cached run's own elapsed_s is
printed beside it. Where the reference has fewer than 2000 steps (--adam-steps 1024:100), the
targets are the losses of the steps it reached (100, 250, 400, ...) and the tables are headed by
the last of them, unless --extrapolate estimates the losses of the milestones beyond it:
  ratio  (used for 1024 px in docs/BENCHMARKS.md) the short curve's last loss L(n) times
         L'(k)/L'(n) of every cached full-length curve at other sizes, the smallest of those
         ratios (the lowest, hardest target). On 2026-11-30's curves the ratio L(2000)/L(100)
         was 0.00291 at 256 px and 0.00275 at 512 px, so each predicts the other's 2000-step
         loss within 6% (check-extrapolation prints it).
  power  a power law fitted to the last half of the curve (log loss against log step); far off
         on this objective (on the 256 px curve of 2026-11-30: +367% fitted on steps 200-400,
         +138% on 400-800), so no figure in docs/BENCHMARKS.md uses it.

The candidates (--candidates, comma-separated; "+bf16", "+cl", "+norm", "+carry" add --precision
bf16, --memory-format channels-last, --first-step norm and --first-step carry, in any combination):
  adam              the seed's schedule itself
  lbfgs<H>          single-scale L-BFGS, lr 1, history H (lbfgs10, lbfgs50, lbfgs100)
  c2f<L>-<s>[-<s>]-h<H>  L levels coarse to fine (--scales L), the coarser levels running
                    the given steps (--scale-steps), L-BFGS history H; the last level runs on
  schedule:<name>   a named schedule (--schedule), with its own stop criterion
Each candidate runs until it converges, stops by its own criterion or reaches --limit seconds
(then it is cancelled). Its time to a target is the loss log's elapsed_s at its first step at
full size whose total loss is at or below the target (targets' setup included, as a user sees
it); the loss at a budget is its last full-size loss at or before the budget.

Usage: ttq.py run --nst BIN --images DIR --out DIR [--sizes 256,512] [--candidates ...]
       ttq.py reference --nst BIN --images DIR --out DIR [--sizes ...] [--ref-threads 1]  (the cached curves only)
       ttq.py report --out DIR          (tables again from OUT/ttq.jsonl)
       ttq.py strip --nst BIN --images DIR --out DIR --size 512 --strip FILE  (best three, beside the seed's)
"""
import argparse
import hashlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import time

MILESTONES = (100, 250, 400, 500, 1000, 2000)


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def per_size(spec, size, default):
    """'256:100,1024:300' -> the value for size (or default)."""
    for part in filter(None, (spec or "").split(",")):
        k, v = part.split(":")
        if int(k) == size:
            return float(v)
    return default


def flags_of(cand):
    """nst stylize flags of a candidate (see the module doc)."""
    base, *mods = cand.split("+")
    if base == "adam":
        f = ["--optimizer", "adam", "--lr", "0.003", "--steps", "100000"]
    elif base.startswith("lbfgs"):
        f = ["--optimizer", "lbfgs", "--lr", "1", "--history", base[5:], "--steps", "100000"]
    elif base.startswith("c2f"):
        parts = base[3:].split("-")
        levels, hist = int(parts[0]), parts[-1]
        split = parts[1:-1]
        if not hist.startswith("h") or len(split) != levels - 1:
            sys.exit(f"ttq: bad candidate {cand}: want c2f<L>-<steps of each coarser level>-h<history>")
        f = ["--optimizer", "lbfgs", "--lr", "1", "--history", hist[1:], "--scales", str(levels),
             "--scale-steps", ",".join(split), "--steps", "100000"]
    elif base.startswith("schedule:"):
        f = ["--schedule", base[len("schedule:"):]]
    else:
        sys.exit(f"ttq: unknown candidate {cand}")
    for m in mods:
        if m == "bf16":
            f += ["--precision", "bf16"]
        elif m == "cl":
            f += ["--memory-format", "channels-last"]
        elif m in ("norm", "carry"):
            f += ["--first-step", m]
        else:
            sys.exit(f"ttq: unknown modifier +{m} in {cand}")
    return f


def levels_of(flags):
    """The pyramid levels a candidate runs: its --scales, else its named schedule's."""
    if "--scales" in flags:
        return int(flags[flags.index("--scales") + 1])
    if "--schedule" in flags:
        return schedules()[flags[flags.index("--schedule") + 1]].get("scales", 1)
    return None


def schedules():
    """nst's named schedules as bench/ttq_torch.py copies them (SCHEDULES; transfer's
    TestSchedulesMatchTheGPUBenchmark keeps that copy equal to transfer/schedule.go), read as
    text so that this script needs no torch."""
    src = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "ttq_torch.py")).read()
    return {m.group(1): json.loads(m.group(2)) for m in
            re.finditer(r"""(?m)^\s*"([a-z]+)": json\.loads\('(\{.*\})'\),\s*# schedule [a-z]+$""", src)}


def read_log(path):
    out = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        break  # a line being written
    return out


def stylize(a, size, name, flags, limit, image=None, extra=(), threads=0):
    """Runs nst stylize; cancels it (SIGTERM) once its log passes limit seconds. Returns the log."""
    log = os.path.join(a.out, f"ttq-{size}-{name}.jsonl")
    out = image or os.path.join(a.out, f"ttq-{size}-{name}.out.png")
    cmd = [a.nst, "stylize", "--quiet", "--content", os.path.join(a.images, f"content-{size}.png"),
           "--style", os.path.join(a.images, f"style-{size}.png"), "--out", out, "--loss-log", log,
           "--random-weights", "--device", "cpu", "--threads", str(threads or a.threads), "--size", str(size)] + flags + list(extra)
    if os.path.exists(log):
        os.remove(log)
    errf = open(log + ".stderr", "w+")
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf)
    cancelled = False
    while p.poll() is None:
        time.sleep(0.2)
        steps = read_log(log)
        if limit and steps and steps[-1]["elapsed_s"] >= limit and not cancelled:
            p.send_signal(signal.SIGTERM)
            cancelled = True
    errf.seek(0)
    err = errf.read()
    errf.close()
    if p.returncode != 0 and not cancelled:
        sys.exit(f"ttq: {' '.join(cmd)} failed ({p.returncode}):\n{err}")
    return read_log(log), cancelled


def full_size(steps, flags):
    """The steps at the output's size (the last pyramid level)."""
    lv = levels_of(flags)
    if not lv or lv < 2:
        return steps
    return [s for s in steps if s.get("scale", 0) == lv]


def first_at(steps, target):
    for s in steps:
        if s["total_loss"] <= target:
            return s
    return None


def at_budget(steps, budget):
    last = None
    for s in steps:
        if s["elapsed_s"] <= budget:
            last = s
    return last


# --- the reference -------------------------------------------------------------------------

def reference(a, size):
    """The cached Adam curve at size (made if missing)."""
    n = int(per_size(a.adam_steps, size, 2000))
    c, s = (os.path.join(a.images, f"{k}-{size}.png") for k in ("content", "style"))
    key = f"adam-{size}px-{n}steps-{sha(c)}-{sha(s)}"
    path = os.path.join(a.cache, key + ".jsonl")
    meta = os.path.join(a.cache, key + ".json")
    if os.path.exists(meta):
        steps = read_log(path)
        if len(steps) == n:
            with open(meta) as f:
                return steps, json.load(f)
    os.makedirs(a.cache, exist_ok=True)
    print(f"ttq: running the seed's Adam at {size} px for {n} steps (cached in {path})", file=sys.stderr)
    l0, t0 = loadavg(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    threads = a.ref_threads or a.threads
    steps, _ = stylize(a, size, "adam-reference", ["--optimizer", "adam", "--lr", "0.003", "--steps", str(n)], 0,
                       image=os.path.join(a.cache, key + ".png"), threads=threads)
    if len(steps) != n:
        sys.exit(f"ttq: the Adam reference logged {len(steps)} of {n} steps")
    os.replace(os.path.join(a.out, f"ttq-{size}-adam-reference.jsonl"), path)
    info = {"start": t0, "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_start": l0,
            "load_end": loadavg(), "nst": a.nst_version, "cpu": cpu_model(), "image": key + ".png", "threads": threads}
    with open(meta, "w") as f:
        json.dump(info, f)
    return steps, info


def power_fit(steps, upto):
    """A power law loss = A * k^b fitted (least squares, log-log) to steps upto/2..upto."""
    pts = [(math.log(s["step"]), math.log(s["total_loss"])) for s in steps[upto // 2 - 1:upto]]
    mx = statistics.fmean(x for x, _ in pts)
    my = statistics.fmean(y for _, y in pts)
    b = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    return lambda k: math.exp(my + b * (math.log(k) - mx))


def full_curves(cache, size=0):
    """{px: steps} of the cached references that ran all 2000 steps, but for size."""
    out = {}
    for name in sorted(os.listdir(cache)):
        m = re.fullmatch(r"adam-(\d+)px-2000steps-.*\.jsonl", name)
        if m and int(m.group(1)) != size:
            steps = read_log(os.path.join(cache, name))
            if len(steps) == 2000:
                out[int(m.group(1))] = steps
    return out


def ratio_at(steps, others, k):
    """The ratio extrapolation (module doc) of step k: (L(n) x the smallest L'(k)/L'(n), {px: ratio})."""
    n = len(steps)
    ratios = {px: o[k - 1]["total_loss"] / o[n - 1]["total_loss"] for px, o in others.items()}
    return steps[-1]["total_loss"] * min(ratios.values()), ratios


def targets(steps, extrapolate=None, others=None):
    """{k: (loss, how)} for the milestones: how is "" where the curve reaches k, else the
    extrapolation (--extrapolate; ratio needs others, the full curves at other sizes)."""
    out = {}
    for k in MILESTONES:
        if k <= len(steps):
            out[k] = (steps[k - 1]["total_loss"], "")
        elif extrapolate == "power":
            out[k] = (power_fit(steps, len(steps))(k), "power law")
        elif extrapolate == "ratio":
            if not others:
                print(f"ttq: no milestone past step {len(steps)} (--extrapolate ratio needs a cached 2000-step "
                      "reference at another size: run those sizes first)", file=sys.stderr)
                break
            loss, ratios = ratio_at(steps, others, k)
            how = ", ".join(f"{px} px {r:.4g}" for px, r in sorted(ratios.items()))
            out[k] = (loss, f"L({len(steps)}) x the smallest L({k})/L({len(steps)}) of {how}")
    return out


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


# --- running ---------------------------------------------------------------------------------

def run(a):
    os.makedirs(a.out, exist_ok=True)
    a.nst_version = subprocess.run([a.nst, "version"], capture_output=True, text=True).stdout.split("\n")[0]
    raw = open(os.path.join(a.out, "ttq.jsonl"), "a")
    cands = [c for c in a.candidates.split(",") if c]
    budgets = [float(b) for b in a.budgets.split(",")]
    for size in [int(s) for s in a.sizes.split(",")]:
        ref, info = reference(a, size)
        rec = {"kind": "reference", "size": size, "steps": len(ref), "elapsed_s": ref[-1]["elapsed_s"],
               "first_s": ref[0]["elapsed_s"], "targets": targets(ref, a.extrapolate, full_curves(a.cache, size) if a.extrapolate == "ratio" else None), **info}
        raw.write(json.dumps(rec) + "\n")
        raw.flush()
        limit = per_size(a.limit, size, max(budgets))
        for rep in range(a.reps):
            order = cands[rep % len(cands):] + cands[:rep % len(cands)] if cands else []
            # The Adam probe first and last, so that the candidates' load is bracketed.
            for name in ["adam-probe"] + order + ["adam-probe"]:
                flags = ["--optimizer", "adam", "--lr", "0.003", "--steps", str(a.probe_steps)] if name == "adam-probe" else flags_of(name)
                l0, w0 = loadavg(), time.time()
                steps, cancelled = stylize(a, size, name.replace(":", "-"), flags, 0 if name == "adam-probe" else limit)
                rec = {"kind": "probe" if name == "adam-probe" else "candidate", "size": size, "rep": rep, "name": name,
                       "flags": flags, "levels": levels_of(flags), "cancelled": cancelled, "load_before": l0,
                       "load_after": loadavg(), "wall_s": time.time() - w0, "steps": steps}
                raw.write(json.dumps(rec) + "\n")
                raw.flush()
                fs = full_size(steps, flags)
                print(f"ttq: {size} px rep {rep} {name}: {len(steps)} steps, final {fs[-1]['total_loss'] if fs else 'not at full size'} "
                      f"at {steps[-1]['elapsed_s'] if steps else 0:.1f} s, load {l0:.1f}", file=sys.stderr)
    raw.close()
    report(a)


# --- reporting -------------------------------------------------------------------------------

def load_raw(out):
    with open(os.path.join(out, "ttq.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def adam_time(probes, k):
    """t_adam(k) from the probes of one repetition: median first step + (k-1) x median step."""
    firsts = [p["steps"][0]["elapsed_s"] for p in probes]
    deltas = []
    for p in probes:
        e = [s["elapsed_s"] for s in p["steps"]]
        deltas += [b - c for c, b in zip(e, e[1:])]
    return statistics.median(firsts) + (k - 1) * statistics.median(deltas), statistics.median(deltas)


def summarise(rows, budgets):
    """Per size: the reference, and per candidate the median over repetitions of its figures."""
    out = {}
    for ref in [r for r in rows if r["kind"] == "reference"]:
        size = ref["size"]
        tg = {int(k): v for k, v in ref["targets"].items()}
        sel = [r for r in rows if r.get("size") == size and r["kind"] in ("probe", "candidate")]
        reps = sorted({r["rep"] for r in sel})
        per = {}
        adam = {}
        for rep in reps:
            probes = [r for r in sel if r["rep"] == rep and r["kind"] == "probe"]
            if not probes:
                continue
            adam[rep] = {k: adam_time(probes, k) for k in tg}
            for r in sel:
                if r["rep"] != rep or r["kind"] != "candidate":
                    continue
                fs = full_size(r["steps"], r["flags"])
                d = per.setdefault(r["name"], {"hits": {k: [] for k in tg}, "budget": {b: [] for b in budgets},
                                               "final": [], "loads": [], "steps": [], "flags": r["flags"]})
                for k, (target, _) in tg.items():
                    hit = first_at(fs, target)
                    d["hits"][k].append(None if hit is None else (hit["step"], hit["elapsed_s"], adam[rep][k][0] / hit["elapsed_s"]))
                for b in budgets:
                    s = at_budget(fs, b)
                    d["budget"][b].append(None if s is None else s["total_loss"])
                if fs:
                    d["final"].append((fs[-1]["total_loss"], fs[-1]["elapsed_s"], fs[-1]["step"], r["cancelled"]))
                d["loads"] += [r["load_before"], r["load_after"]]
                d["steps"].append(r["steps"])
        out[size] = {"ref": ref, "targets": tg, "adam": adam, "cands": per}
    return out


def med_hit(hits):
    got = [h for h in hits if h is not None]
    if len(got) < len(hits) or not got:
        return None
    return (statistics.median(h[0] for h in got), statistics.median(h[1] for h in got), statistics.median(h[2] for h in got), [h[2] for h in got])


def report(a):
    rows = load_raw(a.out)
    budgets = [float(b) for b in a.budgets.split(",")]
    summ = summarise(rows, budgets)
    for size, S in summ.items():
        ref, tg = S["ref"], S["targets"]
        reps = sorted(S["adam"])
        if not reps:
            continue
        top = max(tg)  # the headline target: 2000 steps where the curve reaches them
        step_s = statistics.median(S["adam"][r][top][1] for r in reps)
        t_top = statistics.median(S["adam"][r][top][0] for r in reps)
        how = tg[top][1]  # True in records written before the ratio extrapolation: the power law
        ext = "" if not how else f" (extrapolated: {how})" if isinstance(how, str) else \
            " (extrapolated: power law fitted to steps %d-%d)" % (ref["steps"] // 2, ref["steps"])
        print(f"\n### {size} px\n")
        print(f"Reference: the seed's Adam, {ref['steps']} steps cached ({ref['start']}, load {ref['load_start']:.1f}-{ref['load_end']:.1f}: "
              f"{ref['elapsed_s']:.0f} s in that run, {ref.get('threads', '?')} thread(s)). Interleaved Adam probes: {step_s:.3f} s a step, so {top} steps take "
              f"**{t_top:.0f} s**. Target (loss after {top} steps): **{tg[top][0]:.6g}**{ext}.\n")
        cands = S["cands"]
        order = sorted(cands, key=lambda n: (med_hit(cands[n]["hits"][top]) or (0, 1e9))[1])
        print(f"| candidate | steps to target | time to target s | speed-up vs Adam {top} | per repetition | "
              + " | ".join(f"loss at {b:g} s" for b in budgets) + " | final loss (s, step) | load |")
        print("|---|---|---|---|---|" + "---|" * len(budgets) + "---|---|")
        for n in order:
            d = cands[n]
            h = med_hit(d["hits"][top])
            hs = ("not reached", "-", "-", "-") if h is None else (f"{h[0]:.0f}", f"{h[1]:.1f}", f"**{h[2]:.0f}x**", ", ".join(f"{x:.0f}" for x in h[3]))
            bs = []
            for b in budgets:
                v = d["budget"][b]
                bs.append("-" if any(x is None for x in v) or not v else f"{statistics.median(v):.4g}")
            fin = d["final"]
            fs = "-" if not fin else f"{statistics.median(f[0] for f in fin):.4g} ({statistics.median(f[1] for f in fin):.0f}, {statistics.median(f[2] for f in fin):.0f})"
            print(f"| {n} | {hs[0]} | {hs[1]} | {hs[2]} | {hs[3]} | " + " | ".join(bs) + f" | {fs} | {min(d['loads']):.1f}-{max(d['loads']):.1f} |")
        # Milestones for the best three.
        best = order[:3]
        print(f"\nMilestones (time to the loss the seed's Adam has after k steps; speed-up against Adam's own time to it):\n")
        print("| k | target | Adam s | " + " | ".join(best) + " |")
        print("|---|---|---|" + "---|" * len(best))
        for k, (target, extr) in sorted(tg.items()):
            tk = statistics.median(S["adam"][r][k][0] for r in reps)
            cells = []
            for n in best:
                h = med_hit(cands[n]["hits"][k])
                cells.append("not reached" if h is None else f"{h[1]:.1f} s, **{h[2]:.0f}x**")
            print(f"| {k}{' (extrapolated)' if extr else ''} | {target:.6g} | {tk:.0f} | " + " | ".join(cells) + " |")
        bf16_check(cands)


def bf16_check(cands):
    """The bf16 loss curve against fp32's at the same schedule: largest relative difference at
    the same step over the full-size steps both logged."""
    lines = []
    for n, d in sorted(cands.items()):
        if "+bf16" not in n:
            continue
        base = n.replace("+bf16", "")
        if base not in cands:
            continue
        worst = 0.0
        count = 0
        for sb, sf in zip(cands[n]["steps"], cands[base]["steps"]):
            fb = {s["step"]: s["total_loss"] for s in sb}
            for s in sf:
                if s["step"] in fb:
                    worst = max(worst, abs(fb[s["step"]] - s["total_loss"]) / s["total_loss"])
                    count += 1
        lines.append(f"| {n} | {base} | {count} | {100 * worst:.2f}% |")
    if lines:
        print("\nbf16 against fp32 at the same schedule (same steps, every level; largest relative difference of the total loss):\n")
        print("| bf16 | fp32 | steps compared | largest difference |")
        print("|---|---|---|---|")
        print("\n".join(lines))


def check_extrapolation(a):
    """Both extrapolations' errors where the whole curve is known: cut each cached 2000-step
    curve at step n and predict step 2000, by the ratio of the other sizes' full curves and by
    a power law fitted to steps n/2..n."""
    print("\n| px | method | from steps | predicted loss at 2000 | actual | error |")
    print("|---|---|---|---|---|---|")
    curves = full_curves(a.cache)
    for size, steps in sorted(curves.items()):
        act = steps[1999]["total_loss"]
        others = {px: o for px, o in curves.items() if px != size}
        for n in (100, 400) if others else ():
            pred, ratios = ratio_at(steps[:n], others, 2000)
            print(f"| {size} | ratio ({', '.join(f'{px} px' for px in sorted(ratios))}) | 1-{n} | {pred:.6g} | {act:.6g} | {100 * (pred - act) / act:+.1f}% |")
    for size, steps in sorted(curves.items()):
        act = steps[1999]["total_loss"]
        for n in (200, 400, 800):
            pred = power_fit(steps, n)(2000)
            print(f"| {size} | power law | {n // 2}-{n} | {pred:.6g} | {act:.6g} | {100 * (pred - act) / act:+.1f}% |")


def strip(a):
    """The best three candidates' images at the moment they reach the target (re-run, stopped at
    that step), beside the seed's 2000-step image, downscaled into one strip."""
    from PIL import Image, ImageDraw
    rows = load_raw(a.out)
    budgets = [float(b) for b in a.budgets.split(",")]
    S = summarise(rows, budgets)[a.size]
    cands = S["cands"]
    target = S["targets"][2000][0]
    ranked = sorted((n for n in cands if med_hit(cands[n]["hits"][2000])), key=lambda n: med_hit(cands[n]["hits"][2000])[1])
    if a.strip_candidates:
        ranked = a.strip_candidates.split(",")
    tiles = [("seed's Adam, 2000 steps", Image.open(os.path.join(a.cache, S["ref"]["image"])))]
    for n in ranked[:3]:
        flags = cands[n]["flags"]
        steps = cands[n]["steps"][0]
        fs = full_size(steps, flags)
        hit = first_at(fs, target)
        coarse = len(steps) - len(fs)
        # Deterministic: the same schedule with its last level cut at the target's step.
        fl = list(flags)
        if "--steps" in fl:
            fl[fl.index("--steps") + 1] = str(hit["step"] - coarse)
        else:  # a named schedule: an explicit --steps overrides its last level's
            fl += ["--steps", str(hit["step"] - coarse)]
        img = os.path.join(a.out, f"strip-{n.replace(':', '-')}.png")
        got, _ = stylize(a, a.size, "strip-" + n.replace(":", "-"), fl, 0, image=img)
        if abs(got[-1]["total_loss"] - hit["total_loss"]) > 1e-3 * hit["total_loss"]:
            print(f"ttq: {n} re-run ended at loss {got[-1]['total_loss']}, the timed run had {hit['total_loss']} there", file=sys.stderr)
        tiles.append((f"{n}: {hit['elapsed_s']:.0f} s, {hit['step']} steps", Image.open(img)))
    side = a.strip_px
    pad, label = 6, 16
    out = Image.new("RGB", (len(tiles) * (side + pad) + pad, side + 2 * pad + label), "white")
    d = ImageDraw.Draw(out)
    for i, (text, im) in enumerate(tiles):
        x = pad + i * (side + pad)
        out.paste(im.convert("RGB").resize((side, side), Image.LANCZOS), (x, pad + label))
        d.text((x, pad), text, fill="black")
    out.save(a.strip, quality=88, optimize=True)
    print(f"ttq: strip {a.strip} ({os.path.getsize(a.strip) // 1024} KB): " + "; ".join(t for t, _ in tiles), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["run", "reference", "report", "strip", "check-extrapolation"])
    ap.add_argument("--nst")
    ap.add_argument("--images", help="content-<px>.png and style-<px>.png (bench/prep_images.py)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache", default=os.path.join(os.environ.get("NST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nst"), "bench-ttq"))
    ap.add_argument("--sizes", default="512")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ref-threads", type=int, default=0, help="threads of the Adam reference (default --threads)")
    ap.add_argument("--extrapolate", choices=["ratio", "power"], help="a reference shorter than 2000 steps: estimate the losses of "
                    "the milestones beyond it (module doc; check-extrapolation shows how far off each is)")
    ap.add_argument("--adam-steps", default="256:2000,512:2000,1024:400", help="steps of the cached reference per size")
    ap.add_argument("--probe-steps", type=int, default=4, help="steps of each interleaved Adam probe (the first is set-up)")
    ap.add_argument("--candidates", default="lbfgs100")
    ap.add_argument("--budgets", default="10,30,100")
    ap.add_argument("--limit", default="", help="px:seconds after which a candidate is cancelled (default: the largest budget)")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--size", type=int, default=512, help="strip: the size")
    ap.add_argument("--strip", help="strip: the output (.jpg or .png)")
    ap.add_argument("--strip-px", type=int, default=200)
    ap.add_argument("--strip-candidates", help="strip: these instead of the fastest three")
    a = ap.parse_args()
    if a.mode in ("run", "reference"):
        if not (a.nst and a.images):
            ap.error(a.mode + " needs --nst and --images")
        if a.mode == "reference":
            os.makedirs(a.out, exist_ok=True)
            a.nst_version = subprocess.run([a.nst, "version"], capture_output=True, text=True).stdout.split("\n")[0]
            for size in [int(x) for x in a.sizes.split(",")]:
                steps, info = reference(a, size)
                print(f"ttq: reference at {size} px: {len(steps)} steps, final loss {steps[-1]['total_loss']}", file=sys.stderr)
        else:
            run(a)
    elif a.mode == "report":
        report(a)
    elif a.mode == "strip":
        if not (a.nst and a.images and a.strip):
            ap.error("strip needs --nst, --images and --strip")
        a.nst_version = ""
        strip(a)
    else:
        check_extrapolation(a)


if __name__ == "__main__":
    main()
