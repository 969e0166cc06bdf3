#!/usr/bin/env bash
# bench/run.sh: nst's benchmarks (docs/BENCHMARKS.md). Builds the engine's test binary and nst,
# prepares inputs in a temporary folder, runs each part with nst and the PyTorch reference
# interleaved, and prints markdown tables (raw results in $BENCH_OUT).
#
# Usage: bash bench/run.sh [all|step|ttq|batch|rss|peak|format|profile|scale]...
#   (default: all but profile, which needs linux perf, and scale)
# Environment (defaults in brackets):
#   BENCH_REPS [3]  repetitions of the per-step and batch runs (512 px: BENCH_REPS512 [1])
#   BENCH_STEPS [128:7,256:4,512:2,1024:2]  steps per size, warm-up included (BENCH_WARMUP [1])
#   BENCH_SIZES [128,256,512] (1024 too) BENCH_OPTIMIZERS [adam,lbfgs]: the step part's sizes and optimisers
#   BENCH_THREADS [2]  libtorch threads on both sides
#   TTQ_SIZES [512]  TTQ_CANDIDATES [the issue's list, see ttq_candidates below]  TTQ_BUDGETS [10,30,100]
#     TTQ_REPS [1]  TTQ_LIMIT [px:s,...: when a candidate is cancelled; default the last budget]
#     TTQ_ADAM_STEPS [256:2000,512:2000,1024:400]  TTQ_CACHE [$NST_CACHE/bench-ttq: the seed's Adam curves]
#     TTQ_EXTRAPOLATE [ratio; none: targets only where the reference reaches them]: a shorter
#     reference's later milestones, from the full curves cached at other sizes (run 256,512 first)
#     TTQ_STRIP [unset: a file for the best three schedules' images beside the seed's, at TTQ_STRIP_SIZE [512]]:
#     time to quality (bench/ttq.py)
#   BATCH_CONTENTS [16] BATCH_SIZE [64] BATCH_STEPS [10]; RSS_CONTENTS [100] (x 2 styles) RSS_STEPS [5]
#   FORMAT_SIZES [128 256] FORMAT_STEPS [6] (measured steps per run, after BENCH_WARMUP) FORMAT_REPS [4]:
#     the format part, nst's Adam step in NCHW (the default) and channels-last, interleaved
#   PROFILE_SIZES [128]: the profile part, each side's CPU per step by symbol (bench/perfdiff.py;
#     needs perf) and the Gram matrix by mm, bmm and per image (bench/gram.py)
#   PYTHON [.venv-ref/bin/python] (made by reference/setup-venv.sh)  BENCH_OUT [a new temp folder]
#   BENCH_CONTENT, BENCH_STYLE [unset: the synthetic pictures bench/prep_images.py draws]: a
#     content photo and a style picture of your own, centre-cropped and resized to each size
#   BENCH_PHOTOS [unset: synthetic]: a folder of JPEG/PNG photos the batch and rss parts crop inputs from
#   SCALE_PAIRS [100000,1000000]: catalogue sizes of the scale part (bench/scale: the pipeline over a
#     synthetic catalogue behind an S3 emulator; needs neither PyTorch nor a GPU; about an hour at 1M)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
py=${PYTHON:-$repo/.venv-ref/bin/python}
out=${BENCH_OUT:-$(mktemp -d -t nst-bench-XXXXXX)}
mkdir -p "$out"
parts=("$@")
[[ ${#parts[@]} -eq 0 || " ${parts[*]} " == *" all "* ]] && parts=(peak step format ttq batch rss)
if [[ " ${parts[*]} " == *" scale "* ]]; then
	echo "bench: scale: building into $out" >&2
	go build -o "$out/scale" ./bench/scale
	go build -o "$out/nst" ./cmd/nst
	echo "## Catalogue scale ($(git describe --always --dirty), $(date -u +%FT%TZ))"
	echo
	"$out/scale" -pairs "${SCALE_PAIRS:-100000,1000000}" -nst "$out/nst"
	rest=()
	for p in "${parts[@]}"; do [[ $p == scale ]] || rest+=("$p"); done
	[[ ${#rest[@]} -eq 0 ]] && exit 0
	parts=("${rest[@]}")
fi
content=${BENCH_CONTENT:-}
style=${BENCH_STYLE:-}
photos=${BENCH_PHOTOS:-}

if [[ ! -x $py ]]; then
	echo "bench: $py missing: run 'bash reference/setup-venv.sh' (torch 2.1.2 from the wheel nst links)" >&2
	exit 2
fi
echo "bench: building into $out" >&2
go test -c -o "$out/torch.test" ./transfer/torch
go build -o "$out/nst" ./cmd/nst
for f in $content $style; do [[ -f $f ]] || { echo "bench: $f missing (BENCH_CONTENT/BENCH_STYLE)" >&2; exit 2; }; done
[[ -z $photos || -d $photos ]] || { echo "bench: BENCH_PHOTOS=$photos is not a folder" >&2; exit 2; }
"$py" bench/prep_images.py "$out/img" ${content:+--content "$content"} ${style:+--style "$style"} \
	$(echo 128 256 512 "${TTQ_SIZES:-}" "${BENCH_SIZES:-}" | tr ', ' '\n\n' | sort -nu)

# The time-to-quality candidates of docs/BENCHMARKS.md: single-scale L-BFGS (history 10, 50,
# 100), coarse to fine with 2 and 3 levels and several splits, the named schedules, each in fp32
# NCHW, bf16, channels-last and both.
ttq_candidates() {
	local bases=(lbfgs10 lbfgs50 lbfgs100 c2f2-25-h50 c2f2-50-h50 c2f2-100-h50 c2f3-50-25-h50 c2f3-100-50-h50 c2f3-100-25-h50 schedule:fast)
	local c=()
	for b in "${bases[@]}"; do c+=("$b" "$b+bf16" "$b+cl" "$b+bf16+cl"); done
	local IFS=,
	echo "${c[*]}"
}

echo "# nst benchmarks $(date -u +%FT%TZ), $(git describe --always --dirty)"
echo
echo "Inputs: content ${content:-synthetic (bench/prep_images.py)}, style ${style:-synthetic}; batch photos ${photos:-synthetic}"
echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for part in "${parts[@]}"; do
	case $part in
	peak)
		echo; echo "## Peak: 4096x4096 sgemm (libtorch/MKL), ${BENCH_THREADS:-2} threads"; echo
		for rep in 1 2 3; do # interleaved: nst's test binary (gotch) and PyTorch, same libtorch
			NST_BENCH_THREADS=${BENCH_THREADS:-2} "$out/torch.test" -test.run '^$' -test.bench PeakMatmul -test.benchtime 5x | grep '^Benchmark'
			"$py" bench/seed_bench.py peak --threads "${BENCH_THREADS:-2}" --reps 5
		done
		"$py" bench/seed_bench.py peak --threads 1 --reps 5
		echo "flags: $(grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -E '^(fma|avx2|avx512f|avx512_bf16|amx_tile)$' | tr '\n' ' ')  MHz: $(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2 | xargs)"
		;;
	step)
		echo; echo "## Per step (median s/step; ratio = median of per-repetition nst/PyTorch)"
		"$py" bench/step.py --test-bin "$out/torch.test" --python "$py" --images "$out/img" --out "$out" \
			--reps "${BENCH_REPS:-3}" --reps512 "${BENCH_REPS512:-1}" --threads "${BENCH_THREADS:-2}" \
			--steps "${BENCH_STEPS:-128:7,256:4,512:2,1024:2}" --warmup "${BENCH_WARMUP:-1}" \
			--sizes "${BENCH_SIZES:-128,256,512}" --optimizers "${BENCH_OPTIMIZERS:-adam,lbfgs}"
		;;
	profile)
		echo; echo "## Where a step's CPU goes, nst against the seed's loop cut at conv5_1 (bench/perfdiff.py)"; echo
		for size in ${PROFILE_SIZES:-128}; do
			"$py" bench/perfdiff.py --test-bin "$out/torch.test" --python "$py" --images "$out/img" --size "$size" \
				--threads "${BENCH_THREADS:-2}"
		done
		echo; echo "## The Gram matrix three ways (bench/gram.py)"; echo
		"$py" bench/gram.py --threads "${BENCH_THREADS:-2}"
		;;
	ttq)
		echo; echo "## Time to quality"
		ttq=(--nst "$out/nst" --images "$out/img" --out "$out" --threads "${BENCH_THREADS:-2}" --budgets "${TTQ_BUDGETS:-10,30,100}"
			${TTQ_CACHE:+--cache "$TTQ_CACHE"} ${TTQ_ADAM_STEPS:+--adam-steps "$TTQ_ADAM_STEPS"})
		"$py" bench/ttq.py run "${ttq[@]}" --sizes "${TTQ_SIZES:-512}" --candidates "${TTQ_CANDIDATES:-$(ttq_candidates)}" \
			--reps "${TTQ_REPS:-1}" ${TTQ_LIMIT:+--limit "$TTQ_LIMIT"} \
			$([[ ${TTQ_EXTRAPOLATE:-ratio} == none ]] || echo --extrapolate "${TTQ_EXTRAPOLATE:-ratio}")
		if [[ -n ${TTQ_STRIP:-} ]]; then
			"$py" bench/ttq.py strip "${ttq[@]}" --size "${TTQ_STRIP_SIZE:-512}" --strip "$TTQ_STRIP"
		fi
		;;
	batch)
		echo; echo "## Batch"
		"$py" bench/batch.py batch --nst "$out/nst" --out "$out" --contents "${BATCH_CONTENTS:-16}" --styles 2 \
			--size "${BATCH_SIZE:-64}" --steps "${BATCH_STEPS:-10}" --reps "${BENCH_REPS:-3}" ${photos:+--photos "$photos"}
		;;
	rss)
		echo; echo "## RSS over a long batch"
		"$py" bench/batch.py rss --nst "$out/nst" --out "$out" --contents "${RSS_CONTENTS:-100}" --styles 2 \
			--size "${BATCH_SIZE:-64}" --steps "${RSS_STEPS:-5}" ${photos:+--photos "$photos"}
		;;
	format)
		echo; echo "## Memory format: nst's Adam step, NCHW (the default) and channels-last, interleaved"
		echo; echo "${BENCH_THREADS:-2} threads; s/step: median wall time of a measured step; cpu-s/step: the process's CPU time per measured step"
		echo; echo "| px | rep | first | NCHW s/step | channels-last s/step | NCHW / channels-last | NCHW cpu-s/step | channels-last cpu-s/step | NCHW / channels-last (CPU) | load at start |"
		echo "|---|---|---|---|---|---|---|---|---|---|"
		for size in ${FORMAT_SIZES:-128 256}; do
			for rep in $(seq "${FORMAT_REPS:-4}"); do
				order=(nchw channels-last)
				((rep % 2 == 0)) && order=(channels-last nchw)
				declare -A sps=() cps=()
				load=$(cut -d' ' -f1 /proc/loadavg)
				for f in "${order[@]}"; do
					line=$(NST_BENCH_DIR="$out/img" NST_BENCH_FORMAT=$f NST_BENCH_THREADS=${BENCH_THREADS:-2} NST_BENCH_WARMUP=${BENCH_WARMUP:-1} \
						"$out/torch.test" -test.run '^$' -test.bench "BenchmarkStep/adam/$size\$" -test.benchtime "${FORMAT_STEPS:-6}x" | grep '^Benchmark')
					echo "$line" >>"$out/format.txt"
					sps[$f]=$(awk '{for (i = 1; i < NF; i++) if ($(i+1) == "s/step") print $i}' <<<"$line")
					cps[$f]=$(awk '{for (i = 1; i < NF; i++) if ($(i+1) == "cpu-s/step") print $i}' <<<"$line")
				done
				ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
				echo "| $size | $rep | ${order[0]} | ${sps[nchw]} | ${sps[channels-last]} | $(ratio "${sps[nchw]}" "${sps[channels-last]}") | ${cps[nchw]} | ${cps[channels-last]} | $(ratio "${cps[nchw]}" "${cps[channels-last]}") | $load |"
				unset sps cps
			done
		done
		;;
	*) echo "bench: unknown part $part (all, peak, step, format, ttq, batch, rss)" >&2; exit 2 ;;
	esac
done
echo; echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg); raw results: $out"
