#!/usr/bin/env bash
# bench/gpu.sh: the GPU measurements that choose nst's GPU defaults (batch size, precision,
# memory format), as one prepared run for a GPU machine that has its own PyTorch (CUDA) and no
# package registry, e.g. through the device tool:
#
#   OUT=/some/folder bash bench/gpu.sh          # results: $OUT/gpu-variants.jsonl
#
# It times the seed's objective with its gradient (bench/variants.py: VGG19 to conv5_1, the
# kernels nst's engine calls) per image at 256, 512 and 1024 px: float32 NCHW (nst's default),
# channels-last, bf16 autocast, both, and batches of 2-16 images in fp32 and bf16. nst's own
# binary is not run there: the GPU machine's libtorch is not the 2.1.2 gotch v0.9.1 links.
# Environment: GPU_SIZES [256,512,1024]  GPU_BATCHES [2,4,8,16]  GPU_REPS [3]  PYTHON [python3]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${OUT:-$(mktemp -d -t nst-gpu-XXXXXX)}
py=${PYTHON:-python3}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu-info.txt"
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "tf32 conv", torch.backends.cudnn.allow_tf32)' | tee -a "$out/gpu-info.txt"
batches=${GPU_BATCHES:-2,4,8,16}
variants=fp32,cl,bf16,cl+bf16
for b in ${batches//,/ }; do variants+=",batch$b,batch$b+bf16"; done
for size in $(echo "${GPU_SIZES:-256,512,1024}" | tr , ' '); do
	PYTHONUNBUFFERED=1 "$py" bench/variants.py --device cuda --size "$size" --reps "${GPU_REPS:-3}" --evals 5 \
		--threads 4 --batches "$batches" --variants "$variants" | tee -a "$out/gpu-variants.jsonl"
done
echo "gpu.sh: results in $out/gpu-variants.jsonl" >&2
