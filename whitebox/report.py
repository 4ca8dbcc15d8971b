"""Turn a run's records into pictures: training curves per stage."""

from __future__ import annotations

import json
from pathlib import Path

from whitebox.artifacts import atomic_write


def read_metrics(path: str | Path, stage: str) -> list[dict]:
    """The records of one stage from metrics.jsonl, skipping a line cut short by a kill."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("stage") == stage:
            records.append(record)
    return records


def plot_training(metrics_path: str | Path, stage: str, out: str | Path) -> Path:
    """Loss (log scale) and held-out metrics against step, one PNG per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path, stage)
    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for key, ax in (("train/loss", ax_loss), ("eval/loss", ax_loss)):
        _line(ax, records, key)
    ax_loss.set(yscale="log", xlabel="step", ylabel="cross-entropy", title=f"{stage}: loss")
    for key in sorted({k for r in records for k in r if k.startswith("eval/") and k != "eval/loss"}):
        _line(ax_eval, records, key)
    ax_eval.set(xlabel="step", ylim=(-0.02, 1.02), title=f"{stage}: held-out metrics")
    for ax in (ax_loss, ax_eval):
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return Path(out)


def _line(ax, records: list[dict], key: str) -> None:
    points = [(r["step"], r[key]) for r in records if key in r]
    if points:
        steps, values = zip(*points)
        ax.plot(steps, values, label=key, marker="." if len(points) < 30 else None)
