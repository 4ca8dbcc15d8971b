#!/usr/bin/env bash
# Run a grid whose cells are recorded (grid.results) one cell at a time, and commit each cell's record as it
# finishes, so that a run cut short (a session's end, a lost machine) keeps every finished cell and the next
# machine continues from the committed records:
#
#     scripts/run_recorded_grid.sh configs/headline.yaml runs/headline
#
# A cell already recorded is read back in a second; an interrupted one resumes from its checkpoints while the
# run directory survives. Commits only the record files (git commit -- <paths>), nothing else in the tree.
set -euo pipefail
config=${1:?usage: scripts/run_recorded_grid.sh CONFIG [RUN_DIR]}
run_dir=${2:-runs/$(basename "$config" .yaml)}
results=$(python -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['grid']['results'])" "$config")
if [ ! -f "$run_dir/config.yaml" ]; then
    whitebox sweep "$config" --out "$run_dir" > /dev/null  # the grid's run directory with its config
fi
mkdir -p "$results" "$run_dir/cells"
cp "$run_dir/config.yaml" "$results/config.yaml"
labels=$(python - "$run_dir/config.yaml" <<'PY'
import sys
import whitebox.variants  # noqa: F401
from whitebox.config import load_config
from whitebox.grid.cells import grid_cells
from whitebox.runtime.rundir import cell_label
print(" ".join(cell_label(*cell) for cell in grid_cells(load_config(sys.argv[1]))))
PY
)
git add -- "$results/config.yaml" && git commit -q -m "$(basename "$results"): the grid's config" -- "$results/config.yaml" || true
for label in $labels; do
    if [ -f "$results/$label.json" ] && git ls-files --error-unmatch "$results/$label.json" > /dev/null 2>&1; then
        continue
    fi
    whitebox cell "$run_dir" --cell "$label" > "$run_dir/cells/$label.out" 2>&1 || { echo "cell $label failed: $run_dir/cells/$label.out"; exit 1; }
    git add -- "$results/$label.json"
    git commit -q -m "$(basename "$results"): cell $label recorded" -- "$results/$label.json"
    echo "cell $label recorded and committed"
done
whitebox report "$results"
echo "report: $results/report.md"
