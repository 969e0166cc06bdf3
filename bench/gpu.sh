#!/usr/bin/env bash
# bench/gpu.sh: the GPU measurements that choose nst's GPU defaults (batch size, precision,
# memory format, schedule), as one prepared run for a GPU machine that has its own PyTorch
# (CUDA) and no package registry, e.g. through the device tool:
#
#   OUT=/some/folder bash bench/gpu.sh     # results: $OUT/gpu-variants.jsonl, $OUT/ttq.jsonl, $OUT/gpu-report.md
#
# 1. Per evaluation (bench/variants.py --device "$dev"): the seed's objective with its gradient
#    (VGG19 to conv5_1, the kernels nst's engine calls) per image at 256, 512 and 1024 px: float32
#    NCHW (nst's default), channels-last, bf16 autocast, both, and batches of 2-16 images in fp32
#    and bf16.
# 2. Time to quality (bench/ttq_torch.py, tables by bench/ttq.py report): the seed's Adam for
#    2000 steps as the reference, then each candidate schedule of the CPU benchmark (single-scale
#    L-BFGS, coarse to fine with several splits, nst's named schedules), each in fp32, bf16,
#    channels-last and both, timed to the seed's 2000-step loss and at fixed budgets.
# nst's own binary is not run there: the GPU machine's libtorch is not the 2.1.2 gotch v0.9.1
# links, so these are PyTorch's timings of the same maths.
# Environment: GPU_SIZES [256,512,1024]  GPU_BATCHES [2,4,8,16]  GPU_REPS [3]  PYTHON [python3]
#   GPU_TTQ_SIZES [512,1024]  GPU_TTQ_CANDIDATES [see below]  GPU_TTQ_BUDGETS [0.5,1,3] (seconds; the
#   last also ends each candidate)  GPU_TTQ_REPS [1]  GPU_SKIP_VARIANTS [0]: 1 runs the time-to-quality part only
#   GPU_DEVICE [cuda]: cpu tries the script out on a machine without a GPU (with small GPU_SIZES)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${OUT:-$(mktemp -d -t nst-gpu-XXXXXX)}
py=${PYTHON:-python3}
mkdir -p "$out"
dev=${GPU_DEVICE:-cuda}
if [[ $dev == cuda* ]]; then
	nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu-info.txt"
fi
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "tf32 conv", torch.backends.cudnn.allow_tf32)' | tee -a "$out/gpu-info.txt"
if [[ ${GPU_SKIP_VARIANTS:-0} != 1 ]]; then
	batches=${GPU_BATCHES:-2,4,8,16}
	variants=fp32,cl,bf16,cl+bf16
	for b in ${batches//,/ }; do variants+=",batch$b,batch$b+bf16"; done
	for size in $(echo "${GPU_SIZES:-256,512,1024}" | tr , ' '); do
		PYTHONUNBUFFERED=1 "$py" bench/variants.py --device "$dev" --size "$size" --reps "${GPU_REPS:-3}" --evals 5 \
			--threads 4 --batches "$batches" --variants "$variants" | tee -a "$out/gpu-variants.jsonl"
	done
fi
bases=(lbfgs10 lbfgs50 lbfgs50+norm lbfgs100 c2f2-10-h50 c2f2-10-h50+norm c2f2-25-h50 c2f2-50-h50 c2f2-100-h50 c2f3-50-25-h50 c2f3-100-50-h50 c2f3-100-25-h50 schedule:fast schedule:fast+norm)
cands=()
for b in "${bases[@]}"; do cands+=("$b" "$b+bf16" "$b+cl" "$b+bf16+cl"); done
default_cands=$(IFS=,; echo "${cands[*]}")
PYTHONUNBUFFERED=1 "$py" bench/ttq_torch.py --out "$out" --device "$dev" --sizes "${GPU_TTQ_SIZES:-512,1024}" \
	--candidates "${GPU_TTQ_CANDIDATES:-$default_cands}" --budgets "${GPU_TTQ_BUDGETS:-0.5,1,3}" --reps "${GPU_TTQ_REPS:-1}" ${GPU_TTQ_ADAM_STEPS:+--adam-steps "$GPU_TTQ_ADAM_STEPS"}
"$py" bench/ttq.py report --out "$out" --budgets "${GPU_TTQ_BUDGETS:-0.5,1,3}" | tee "$out/gpu-report.md"
echo "gpu.sh: results in $out (gpu-variants.jsonl, ttq.jsonl, gpu-report.md)" >&2
