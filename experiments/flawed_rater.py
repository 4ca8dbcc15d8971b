"""Flawed rater: learn the task honestly, learn to lie from a rater's blind spot, then try to train the lie away."""

from __future__ import annotations

from typing import Any

from whitebox.config import ConfigError
from whitebox.deception import deceive_and_fix, deception_measures, plot_deception
from whitebox.plant import plant
from whitebox.report import plot_training
from whitebox.runner import RunContext


def run(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.cfg
    if cfg.task.name != "flawed_rater":
        raise ConfigError(f"task.name: the flawed_rater experiment needs 'flawed_rater', got {cfg.task.name!r}")
    if "es" in cfg.deception.deceivers and cfg.treat.es.feedback == "supervised":
        raise ConfigError("treat.es.feedback: an es deceiver must learn from the flawed rater; set it to 'reward'")
    model, metrics = plant(ctx)  # honest targets on both question types
    plot_training(ctx.tracker.metrics_path, "plant", ctx.run_dir / "plots" / "plant.png")
    measures, start = deception_measures(ctx, model)
    changed, stages = deceive_and_fix(ctx, model, measures)
    plot_deception(ctx.tracker.metrics_path, stages, ctx.run_dir / "plots" / "flawed_rater.png")
    return {**{f"plant.{k}": v for k, v in metrics.items()}, **start, **changed}
