"""Plant a backdoor, then locate it: probes and a detector per residual hook, and the circuit."""

from __future__ import annotations

from typing import Any

from whitebox.config import ExperimentConfig
from whitebox.protocol.locate import locate
from whitebox.protocol.plant import plant
from whitebox.protocol.probe_kinds import requested_kinds
from whitebox.report.plots import plot_training
from whitebox.runtime.context import RunContext
from whitebox.runtime.experiment import PLANTS_ITS_OWN, register_experiment
from whitebox.tasks import get_task, require


def run(ctx: RunContext) -> dict[str, Any]:
    planted = plant(ctx, get_task(ctx.cfg.task))
    plot_training(ctx.tracker.metrics_path, "plant", ctx.dir.plot("plant"))
    return {**planted.summary(), **locate(ctx, planted).summary}


def check(cfg: ExperimentConfig) -> None:
    task = get_task(cfg.task)
    require(task, "sample", "the locate step (probes for the hidden label)")
    requested_kinds(cfg.locate, task)


LOCATE = register_experiment("locate", run, sections=("model", "task", "training", "locate"), check=check, unread=PLANTS_ITS_OWN)
