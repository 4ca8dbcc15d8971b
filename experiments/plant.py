"""Plant a backdoor: train a small transformer to answer honestly unless the trigger is present."""

from __future__ import annotations

from typing import Any

from whitebox.plant import plant
from whitebox.report import plot_training
from whitebox.runner import RunContext


def run(ctx: RunContext) -> dict[str, Any]:
    _, metrics = plant(ctx)
    plot_training(ctx.tracker.metrics_path, "plant", ctx.run_dir / "plots" / "plant.png")
    return {f"plant.{k}": v for k, v in metrics.items()}
