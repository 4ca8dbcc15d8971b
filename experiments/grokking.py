"""Grokking: train modular addition long past memorisation and watch the generalising circuit form."""

from __future__ import annotations

from typing import Any

from whitebox.config import ConfigError
from whitebox.early_warning import crossing_steps, early_warning_measures, first_crossing, grokking_signals, lead_times
from whitebox.fourier import progress_measures
from whitebox.plant import plant
from whitebox.report import plot_grokking, plot_panels, read_metrics
from whitebox.runner import RunContext
from whitebox.tasks.modular import is_train


def run(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.cfg
    if cfg.task.name != "modular":
        raise ConfigError(f"task.name: the grokking experiment needs 'modular', got {cfg.task.name!r}")
    p, train_mask = cfg.task.p, is_train(cfg.task, cfg.run.seed)

    def evaluate(model) -> dict[str, float]:
        return {**progress_measures(model, p, train_mask), **early_warning_measures(model, p, train_mask)}

    _, final = plant(ctx, evaluate=evaluate)
    records = read_metrics(ctx.tracker.metrics_path, "plant")
    plot_grokking(ctx.tracker.metrics_path, "plant", ctx.run_dir / "plots" / "grokking.png")
    early_warning = {  # plot_grokking has fixed panels; R^2 can be negative, so no unit scale here
        "unseen pairs: accuracy, Fourier-probe R^2, anomaly AUROC": [
            "eval/test_acc", "eval/fourier_probe_r2", "eval/test_anomaly_auroc"],
        "Mahalanobis score ratio, unseen / seen pairs": ["eval/test_anomaly"],
    }
    plot_panels(records, early_warning, ctx.run_dir / "plots" / "early_warning.png")
    crossings = {f"grok.step_{name}_acc_0.9": first_crossing(records, f"eval/{name}_acc", "above", 0.9)
                 for name in ("train", "test")}
    memorised_at = crossings["grok.step_train_acc_0.9"]
    signals = grokking_signals(records, p, memorised_at)
    after = memorised_at or 0
    steps = crossing_steps(records, signals, after)
    leads = lead_times(records, signals, "eval/test_acc", 0.9, after)
    return {
        **{f"grok.{k}": v for k, v in final.items()},
        **crossings,
        **{f"grok.step_{name}": step for name, step in steps.items()},
        **{f"grok.lead.{name}": lead for name, lead in leads.items()},
        **{f"grok.threshold.{name}": threshold for name, (_, _, threshold) in signals.items()},
    }
