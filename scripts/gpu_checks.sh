#!/usr/bin/env bash
# The GPU measurements of docs/BENCHMARKS.md in one go, for a session that is lent a GPU:
# plant throughput through the bridge vs plain torch (fp32, bf16, bf16 + torch.compile), ES and zo
# step costs, and the wall time of the GPU suppression config. Numbers land in $OUT (default
# gpu_results/); copy them into docs/benchmarks/ and the tables of docs/BENCHMARKS.md.
#   bash scripts/gpu_checks.sh [OUT_DIR]          # about 20 min on one H200; the suppression run is the long part
set -euo pipefail
OUT=${1:-gpu_results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
plant() {  # tag, then bench_plant arguments: fp32, bf16 autocast, bf16 + torch.compile
  local tag=$1; shift
  python scripts/bench_plant.py --device cuda "$@" --out "$OUT/bench_plant_${tag}_fp32.json"
  python scripts/bench_plant.py --device cuda "$@" --precision bf16 --out "$OUT/bench_plant_${tag}_bf16.json"
  python scripts/bench_plant.py --device cuda "$@" --precision bf16 --compile --out "$OUT/bench_plant_${tag}_bf16_compile.json"
}
plant quickstart --d-model 64 --n-layers 2
plant wide --d-model 512 --n-layers 8 --batch-size 256
python scripts/bench_regimes.py --device cuda --repeats 9 --out "$OUT/bench_regimes_cuda.json"
/usr/bin/time -v python -m whitebox run configs/suppression_gpu.yaml --out "$OUT/suppression_gpu" \
  > "$OUT/suppression_gpu.log" 2>&1
grep -E "Elapsed|Maximum resident" "$OUT/suppression_gpu.log"
