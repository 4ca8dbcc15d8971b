"""One cell of the suppression experiment: plant, locate, treat with every regime, revive."""

from __future__ import annotations

from typing import Any

from whitebox.locate import locate
from whitebox.plant import plant
from whitebox.report import plot_training
from whitebox.revive import revive_all
from whitebox.runner import RunContext
from whitebox.treat import treat


def run(ctx: RunContext) -> dict[str, Any]:
    model, metrics = plant(ctx)
    plot_training(ctx.tracker.metrics_path, "plant", ctx.run_dir / "plots" / "plant.png")
    out = {**{f"plant.{k}": v for k, v in metrics.items()}, **locate(ctx, model), **treat(ctx, model)}
    return {**out, **revive_all(ctx, model)}
