#!/usr/bin/env bash
# The GPU measurements of docs/BENCHMARKS.md in one command, for a session that is lent a GPU; about 6 minutes
# on one H200 (every step has its own time limit, so one that hangs cannot eat the rest):
#   - plant training: fast path, hooked bridge and plain torch from the same weights (fp32, bf16, bf16 + compile),
#     at the quickstart size and at 8 x 512;
#   - the regimes: ES against its plain-torch and FLOP floors, the one-chunk layout CUDA uses, peak memory;
#   - the quickstart config end to end on the GPU (wall time by step: summary.json timing.*).
# Numbers land in $OUT (default gpu_results/) as JSON; copy them into docs/benchmarks/ and the tables of
# docs/BENCHMARKS.md. A failed step is reported at the end and the others still run.
# With GRID=1 it then runs seed 0 of each GPU headline config (configs/headline_gpu_4x256.yaml and _6x256.yaml, up to
# 10 minutes each, cells recorded under $OUT as they finish): the wall time of one seed of those grids, by step.
#   bash scripts/gpu_checks.sh [OUT_DIR]
#   GRID=1 bash scripts/gpu_checks.sh [OUT_DIR]
set -uo pipefail
OUT=${1:-gpu_results}
mkdir -p "$OUT"
failed=()
step() {  # name, seconds allowed, command...
  local name=$1 limit=$2; shift 2
  echo "== $name"
  if ! timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; then failed+=("$name"); fi
  tail -n 4 "$OUT/$name.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
for size in "quickstart --d-model 64 --n-layers 2" "wide --d-model 512 --n-layers 8 --batch-size 256"; do
  set -- $size
  tag=$1; shift
  step "plant_${tag}_fp32" 90 python scripts/bench_plant.py --device cuda "$@" --out "$OUT/bench_plant_${tag}_fp32.json"
  step "plant_${tag}_bf16" 90 python scripts/bench_plant.py --device cuda "$@" --precision bf16 \
    --out "$OUT/bench_plant_${tag}_bf16.json"
  step "plant_${tag}_bf16_compile" 150 python scripts/bench_plant.py --device cuda "$@" --precision bf16 --compile \
    --out "$OUT/bench_plant_${tag}_bf16_compile.json"
done
step regimes 120 python scripts/bench_regimes.py --device cuda --repeats 5 --out "$OUT/bench_regimes_cuda.json"
step quickstart 240 python -m whitebox run configs/quickstart.yaml --set training.device=cuda \
  --set tracking.wandb_mode=disabled --out "$OUT/quickstart_cuda"
cp "$OUT/quickstart_cuda/summary.json" "$OUT/quickstart_cuda_summary.json" 2>/dev/null
if [ "${GRID:-0}" = 1 ]; then
  for size in 4x256 6x256; do
    step "headline_${size}_seed0" 600 python -m whitebox run "configs/headline_gpu_${size}.yaml" --set "grid.seeds=[0]" \
      --set "grid.results=$OUT/headline_${size}_cells" --set tracking.wandb_mode=disabled --out "$OUT/headline_${size}"
  done
fi
if [ ${#failed[@]} -gt 0 ]; then echo "failed: ${failed[*]} (logs in $OUT)"; exit 1; fi
echo "all steps done; results in $OUT"
