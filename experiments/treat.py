"""One cell of the suppression experiment: plant, locate, treat with every regime, revive; a one-seed report."""

from __future__ import annotations

from typing import Any

from whitebox.locate import locate
from whitebox.plant import plant
from whitebox.report import plot_training
from whitebox.revive import revive_all
from whitebox.runner import RunContext
from whitebox.suppression_report import build_report
from whitebox.treat import treat, trigger_kind


def run(ctx: RunContext) -> dict[str, Any]:
    model, metrics = plant(ctx)
    plot_training(ctx.tracker.metrics_path, "plant", ctx.run_dir / "plots" / "plant.png")
    out = {**{f"plant.{k}": v for k, v in metrics.items()}, **locate(ctx, model), **treat(ctx, model)}
    out.update(revive_all(ctx, model))
    cell = (trigger_kind(ctx.cfg.task), ctx.cfg.run.seed)
    build_report(ctx.run_dir, ctx.cfg, {cell: out}, {cell: ctx.run_dir})
    return out
