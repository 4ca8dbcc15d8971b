"""Plant a backdoor: train a small transformer to answer honestly unless the trigger is present."""

from __future__ import annotations

from typing import Any

from whitebox.protocol.plant import plant
from whitebox.report.plots import plot_training
from whitebox.runtime.context import RunContext
from whitebox.runtime.experiment import register_experiment
from whitebox.tasks import get_task


def run(ctx: RunContext) -> dict[str, Any]:
    planted = plant(ctx, get_task(ctx.cfg.task))
    plot_training(ctx.tracker.metrics_path, "plant", ctx.dir.plot("plant"))
    return planted.summary()


PLANT = register_experiment("plant", run, sections=("model", "task", "training"))
