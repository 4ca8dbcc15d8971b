"""When does the model grok, and do the white-box signals see it coming? The grokking config across seeds.

Runs configs/grokking.yaml for every seed into OUT/s<seed> (a finished run is reused, an interrupted
one resumed) and tabulates from each summary.json the steps at which train and test accuracy first
reach 0.9, the grokking delay between them, and each early-warning signal's crossing step and lead
time (steps before test accuracy reached 0.9; whitebox/early_warning.py states the thresholds), with
mean ± 95% CI (Student t) over seeds. A signal that never crossed counts as missing for its mean.

A seed of a long config (configs/grokking_nanda.yaml: hours per seed on CPU) outlives what is safe
to leave uncommitted, so with --results each finished seed leaves <results>/<label>-s<seed>.json (its
config, summary, every evaluation record of training, versions and commit; the grid's record format),
a seed recorded there is read back instead of run, and --commit commits each record as it is
written. --set overrides config keys for every seed (the negative controls: training.weight_decay=0,
a smaller task.train_fraction) and --label names them.

    python scripts/grokking_seeds.py --seeds 0 1 2 --out runs/grokking_seeds --json grokking_seeds.json \
        --plot grokking_seeds.png
    python scripts/grokking_seeds.py --config configs/grokking_nanda.yaml --seeds 0 1 2 3 4 --label nanda \
        --results docs/results/data/grokking_nanda --commit --json docs/results/data/grokking_nanda/seeds.json
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from whitebox.config import ConfigError, ExperimentConfig
from whitebox.grid.seeds import recorded_run, seed_config
from whitebox.report.aggregate import seed_table
from whitebox.report.plots import plot_panels
from whitebox.runtime.artifacts import ArtifactError, write_json

SIGNALS = ("fourier_probe", "test_anomaly", "test_logprob")


def grokked(cfg: ExperimentConfig, out: Path, results: Path | None = None,
            commit: bool = False) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """One seed's numbers and training evaluations: read from its record, else run (or resumed) and recorded."""
    done = recorded_run(cfg, out, "plant", results, commit)
    return row_of(done["summary"]), done["curves"].get("plant", [])


def row_of(s: dict[str, Any]) -> dict[str, float]:
    """The table's numbers from a grokking summary (NaN where a crossing never happened)."""
    row = {"train_0.9": s["grok.step_train_acc_0.9"], "test_0.9": s["grok.step_test_acc_0.9"]}
    row["delay"] = None if None in row.values() else row["test_0.9"] - row["train_0.9"]
    row["final_test_acc"] = s["grok.test_acc"]
    for name in SIGNALS:
        row[f"step {name}"], row[f"lead {name}"] = s[f"grok.step_{name}"], s[f"grok.lead.{name}"]
    return {k: math.nan if v is None else float(v) for k, v in row.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/grokking.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/grokking_seeds"))
    parser.add_argument("--json", type=Path, default=Path("grokking_seeds.json"))
    parser.add_argument("--plot", type=Path, help="PNG of every seed's curves")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (repeatable)")
    parser.add_argument("--label", help="run and record names <label>-s<seed> (default s<seed>)")
    parser.add_argument("--results", type=Path, help="a directory to commit: one record per finished seed, read back")
    parser.add_argument("--commit", action="store_true",
                        help="git-commit each record as it is written (with --results)")
    args = parser.parse_args()
    if args.commit and args.results is None:
        parser.error("--commit commits the records of --results; give --results DIR")

    try:
        configs = {seed: seed_config(args.config, seed, args.label, args.set) for seed in args.seeds}
        done = {seed: grokked(cfg, args.out, args.results, args.commit) for seed, cfg in configs.items()}
    except (ConfigError, ArtifactError) as err:
        raise SystemExit(f"grokking_seeds: {err}") from None
    rows = {seed: row for seed, (row, _) in done.items()}
    table, summary = seed_table(rows, digits=lambda key: 3 if key == "final_test_acc" else 0)
    print(table)
    write_json(args.json, {"config": args.config, "seeds": args.seeds, "runs": rows, "summary": summary})
    print(f"wrote {args.json}")
    if args.plot:
        plot_seeds({seed: curve for seed, (_, curve) in done.items()}, args.plot)
        print(f"wrote {args.plot}")


def plot_seeds(curves: dict[int, list[dict[str, Any]]], path: Path) -> None:
    """Train/test accuracy, the continuous metric and the Fourier probe of every seed, one line each."""
    records = []
    for seed, curve in curves.items():  # one series per seed: rename the keys so plot_panels draws them apart
        for r in curve:
            records.append({"step": r["step"], **{f"s{seed} {k.removeprefix('eval/')}": v for k, v in r.items()
                                                  if k.startswith("eval/")}})
    panels = {title: [f"s{seed} {key}" for seed in curves for key in keys] for title, keys in {
        "exact-match accuracy (train, test)": ["train_acc", "test_acc"],
        "log-prob of the right answer on test pairs": ["test_logprob"],
        "Fourier-probe R^2 on test pairs": ["fourier_probe_r2"],
    }.items()}
    plot_panels(sorted(records, key=lambda r: r["step"]), panels, path)


if __name__ == "__main__":
    main()
