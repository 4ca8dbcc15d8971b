"""Grokking: train modular addition long past memorisation and watch the generalising circuit form."""

from __future__ import annotations

from typing import Any

from whitebox.config import ConfigError, ExperimentConfig
from whitebox.protocol.plant import plant
from whitebox.report.plots import plot_grokking, plot_panels, read_metrics
from whitebox.runtime.context import RunContext
from whitebox.runtime.experiment import register_experiment
from whitebox.runtime.rundir import step_keys
from whitebox.studies.early_warning import (
    crossing_steps,
    early_warning_measures,
    first_crossing,
    grokking_signals,
    lead_times,
)
from whitebox.studies.fourier import progress_measures
from whitebox.tasks import get_task


def run(ctx: RunContext) -> dict[str, Any]:
    cfg, task = ctx.cfg, get_task(ctx.cfg.task)
    p, train_mask = task.config.p, task.is_train(cfg.run.seed)

    def evaluate(model) -> dict[str, float]:
        return {**progress_measures(model, p, train_mask), **early_warning_measures(model, p, train_mask)}

    final = plant(ctx, task, evaluate=evaluate).metrics
    records = read_metrics(ctx.tracker.metrics_path, "plant")
    plot_grokking(ctx.tracker.metrics_path, "plant", ctx.dir.plot("grokking"))
    early_warning = {  # plot_grokking has fixed panels; R^2 can be negative, so no unit scale here
        "unseen pairs: accuracy, Fourier-probe R^2, anomaly AUROC": [
            "eval/test_acc", "eval/fourier_probe_r2", "eval/test_anomaly_auroc"],
        "Mahalanobis score ratio, unseen / seen pairs": ["eval/test_anomaly"],
    }
    plot_panels(records, early_warning, ctx.dir.plot("early_warning"))
    crossings = {f"step_{name}_acc_0.9": first_crossing(records, f"eval/{name}_acc", "above", 0.9) for name in ("train", "test")}
    memorised_at = crossings["step_train_acc_0.9"]
    signals = grokking_signals(records, p, memorised_at)
    after = memorised_at or 0
    steps = crossing_steps(records, signals, after)
    leads = lead_times(records, signals, "eval/test_acc", 0.9, after)
    return step_keys("grok", {
        **final,
        **crossings,
        **{f"step_{name}": step for name, step in steps.items()},
        **{f"lead.{name}": lead for name, lead in leads.items()},
        **{f"threshold.{name}": threshold for name, (_, _, threshold) in signals.items()},
    })


def check(cfg: ExperimentConfig) -> None:
    """The task must be modular addition over every pair (a modulus p and a seeded train mask over p*p pairs)."""
    task = get_task(cfg.task)
    if not (hasattr(task, "is_train") and hasattr(task.config, "p")):
        raise ConfigError(f"task.name: the grokking experiment needs 'modular' (addition over all pairs), got {task.name!r}")


GROKKING = register_experiment("grokking", run, sections=("model", "task", "training"), check=check)
