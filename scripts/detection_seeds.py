"""The detection benchmark across seeds: is each behaviour's best AUROC (and its baseline's) stable?

Runs configs/anomaly.yaml for every seed into OUT/s<seed> (a finished run is reused, an interrupted
one resumed) and tabulates from each run's summary.json and detection.json, per behaviour and
method, the best AUROC over hooks, the best recall at 1% FPR and the baseline's best AUROC, plus
for the learned lie the detector's AUROC at the last residual hook and the two models' lie rates,
with mean ± 95% CI (Student t) over seeds.

    python scripts/detection_seeds.py --seeds 0 1 2 --out runs/anomaly_seeds --json detection_seeds.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from whitebox.config import load_config
from whitebox.report.aggregate import seed_table
from whitebox.runner import run_or_resume
from whitebox.runtime.artifacts import read_json, write_json
from whitebox.studies.detection import METHODS

BEHAVIOURS = ("backdoor_token", "backdoor_computed", "flawed_rater", "flawed_rater_lie")
LIE = "flawed_rater_lie"


def detected(config: str, seed: int, out: Path) -> dict[str, float]:
    """One seed's numbers, running or resuming the config only where needed."""
    overrides = [f"run.seed={seed}", f"run.name=s{seed}", "tracking.wandb_mode=disabled"]
    run_dir = out / f"s{seed}"
    s = run_or_resume(load_config(config, overrides), run_dir)
    row = {}
    for b in BEHAVIOURS:
        for m in METHODS:
            for key in ("auroc_best", "recall_best", "baseline_auroc_best"):
                row[f"{b}.{m}.{key}"] = float(s[f"detect.{b}.{m}.{key}"])
    last = [r for r in read_json(run_dir / "detection.json") if r["behaviour"] == LIE and r["method"] == "detector"][-1]
    row[f"{LIE}.detector.auroc_{last['name']}"] = last["auroc"]
    row[f"{LIE}.detector.baseline_auroc_{last['name']}"] = last["baseline_auroc"]
    for model in ("deceived", "control"):
        row[f"{LIE}.{model}.lie_rate"] = float(s[f"detect.{LIE}.{model}.lie_rate"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/anomaly.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/anomaly_seeds"))
    parser.add_argument("--json", type=Path, default=Path("detection_seeds.json"))
    args = parser.parse_args()

    rows = {seed: detected(args.config, seed, args.out) for seed in args.seeds}
    table, summary = seed_table(rows)
    print(table)
    write_json(args.json, {"config": args.config, "seeds": args.seeds, "runs": rows, "summary": summary})
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
