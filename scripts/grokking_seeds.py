"""When does the model grok, and do the white-box signals see it coming? The grokking config across seeds.

Runs configs/grokking.yaml for every seed into OUT/s<seed> (a finished run is reused, an interrupted
one resumed) and tabulates from each summary.json the steps at which train and test accuracy first
reach 0.9, the grokking delay between them, and each early-warning signal's crossing step and lead
time (steps before test accuracy reached 0.9; whitebox/early_warning.py states the thresholds), with
mean ± 95% CI (Student t) over seeds. A signal that never crossed counts as missing for its mean.

    python scripts/grokking_seeds.py --seeds 0 1 2 --out runs/grokking_seeds --json grokking_seeds.json \
        --plot grokking_seeds.png
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from whitebox.config import load_config
from whitebox.report.aggregate import seed_table
from whitebox.report.plots import plot_panels, read_metrics
from whitebox.runner import run_or_resume
from whitebox.runtime.artifacts import write_json

SIGNALS = ("fourier_probe", "test_anomaly", "test_logprob")


def grokked(config: str, seed: int, out: Path) -> dict[str, float]:
    """The grokking numbers of one seed, running or resuming the config only where needed."""
    overrides = [f"run.seed={seed}", f"run.name=s{seed}", "tracking.wandb_mode=disabled"]
    s = run_or_resume(load_config(config, overrides), out / f"s{seed}")
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
    args = parser.parse_args()

    rows = {seed: grokked(args.config, seed, args.out) for seed in args.seeds}
    table, summary = seed_table(rows, digits=lambda key: 3 if key == "final_test_acc" else 0)
    print(table)
    write_json(args.json, {"config": args.config, "seeds": args.seeds, "runs": rows, "summary": summary})
    print(f"wrote {args.json}")
    if args.plot:
        plot_seeds(args.out, args.seeds, args.plot)
        print(f"wrote {args.plot}")


def plot_seeds(out: Path, seeds: list[int], path: Path) -> None:
    """Train/test accuracy, the continuous metric and the Fourier probe of every seed, one line each."""
    records = []
    for seed in seeds:  # one series per seed: rename the keys so plot_panels draws them apart
        for r in read_metrics(out / f"s{seed}" / "metrics.jsonl", "plant"):
            if "eval/test_acc" in r:
                records.append({"step": r["step"], **{f"s{seed} {k.removeprefix('eval/')}": v for k, v in r.items()
                                                      if k.startswith("eval/")}})
    panels = {title: [f"s{seed} {key}" for seed in seeds for key in keys] for title, keys in {
        "exact-match accuracy (train, test)": ["train_acc", "test_acc"],
        "log-prob of the right answer on test pairs": ["test_logprob"],
        "Fourier-probe R^2 on test pairs": ["fourier_probe_r2"],
    }.items()}
    plot_panels(sorted(records, key=lambda r: r["step"]), panels, path)


if __name__ == "__main__":
    main()
