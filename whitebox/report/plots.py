"""Turn a run's records into pictures and headline numbers: training curves per stage."""

from __future__ import annotations

from pathlib import Path

from whitebox.runtime.figures import save_figure, subplots
from whitebox.runtime.records import read_records


def read_metrics(path: str | Path, stage: str) -> list[dict]:
    """The records of one stage from metrics.jsonl, every line checked (a last line cut short by a kill is left out)."""
    return read_records(Path(path), stage)


def plot_training(metrics_path: str | Path, stage: str, out: str | Path) -> Path:
    """Loss (log scale) and held-out metrics against step, one PNG per stage."""
    records = read_metrics(metrics_path, stage)
    shares = sorted({k for r in records for k in r if k.startswith("eval/") and k != "eval/loss"})
    panels = {f"{stage}: loss": ["train/loss", "eval/loss"], f"{stage}: held-out metrics": shares}
    return plot_panels(records, panels, out, log_scale={f"{stage}: loss"}, unit_scale={f"{stage}: held-out metrics"})


def plot_panels(
    records: list[dict],
    panels: dict[str, list[str]],
    out: str | Path,
    log_scale: set[str] = frozenset(),
    unit_scale: set[str] = frozenset(),
) -> Path:
    """One panel per title, one line per metric key against step; written atomically as PNG."""
    fig, axes = subplots(1, len(panels), figsize=(5 * len(panels), 3.6), constrained_layout=True, squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels.items()):
        for key in keys:
            _line(ax, records, key)
        ax.set(xlabel="step", title=title)
        if title in log_scale:
            ax.set_yscale("log")
        if title in unit_scale:
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
    return save_figure(fig, out)


def plot_grokking(metrics_path: str | Path, stage: str, out: str | Path) -> Path:
    """Progress measures of modular addition: fit, Fourier losses, sparsity, and the metric question."""
    records = read_metrics(metrics_path, stage)
    panels = {
        "accuracy (exact match: discontinuous)": ["eval/train_acc", "eval/test_acc"],
        "log-prob of the right answer (continuous)": ["eval/test_logprob"],
        "loss": ["eval/train_loss", "eval/test_loss", "eval/restricted_loss", "eval/restricted_loss_train",
                 "eval/excluded_loss"],
        "embedding Fourier spectrum": ["eval/fourier_gini", "eval/fourier_key_share"],
        "total weight norm": ["eval/weight_norm"],
    }
    unit = {"accuracy (exact match: discontinuous)", "embedding Fourier spectrum"}
    return plot_panels(records, panels, out, log_scale={"loss"}, unit_scale=unit)


def _line(ax, records: list[dict], key: str) -> None:
    points = [(r["step"], r[key]) for r in records if key in r]
    if points:
        steps, values = zip(*points)
        ax.plot(steps, values, label=key, marker="." if len(points) < 30 else None)


def plot_treatment(metrics_path: str | Path, stages: list[str], out: str | Path) -> Path:
    """One panel per measure, one line per treatment cell, against forward-pass equivalents spent."""
    records = {stage: [r for r in read_metrics(metrics_path, stage) if "eval/asr" in r] for stage in stages}
    keys = [k for k in next((rs[0] for rs in records.values() if rs), {}) if k.startswith("eval/") and k != "eval/loss"]
    fig, axes = subplots(1, max(1, len(keys)), figsize=(4.2 * max(1, len(keys)), 3.6), constrained_layout=True, squeeze=False)
    for ax, key in zip(axes[0], keys):
        for stage, rows in records.items():
            points = [(r["budget/forward_equivalents"], r[key]) for r in rows if key in r and "budget/forward_equivalents" in r]
            if points:
                ax.plot(*zip(*points), label=stage.removeprefix("treat/"), marker=".")
        ax.set(xlabel="forward-pass equivalents", title=key.removeprefix("eval/"))
        ax.grid(alpha=0.3)
    axes[0][0].legend(frameon=False, fontsize=7)
    return save_figure(fig, out)
