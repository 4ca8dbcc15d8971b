"""Flawed rater: learn the task honestly, learn to lie from a rater's blind spot, then try to train the lie away."""

from __future__ import annotations

from typing import Any

from whitebox.config import ConfigError, ExperimentConfig
from whitebox.protocol.plant import plant
from whitebox.report.plots import plot_training
from whitebox.runtime.context import RunContext
from whitebox.runtime.experiment import PLANTS_ITS_OWN, register_experiment
from whitebox.studies.deception import deceive_and_fix, deception_measures, plot_deception, require_flawed_rater
from whitebox.tasks import get_task, require


def run(ctx: RunContext) -> dict[str, Any]:
    planted = plant(ctx, get_task(ctx.cfg.task))  # honest targets on both question types
    plot_training(ctx.tracker.metrics_path, "plant", ctx.dir.plot("plant"))
    measures, start = deception_measures(ctx, planted)
    changed, stages = deceive_and_fix(ctx, planted, measures)
    plot_deception(ctx.tracker.metrics_path, stages, ctx.dir.plot("flawed_rater"))
    return {**planted.summary(), **start, **changed}


def check(cfg: ExperimentConfig) -> None:
    task = get_task(cfg.task)
    require_flawed_rater(task, "the flawed_rater experiment")
    require(task, "sample", "the flawed_rater experiment's probes")
    if "es" in cfg.deception.deceivers and cfg.treat.es.feedback == "supervised":
        raise ConfigError("treat.es.feedback: an es deceiver must learn from the flawed rater; set it to 'reward'")


FLAWED_RATER = register_experiment(
    "flawed_rater", run, sections=("model", "task", "training", "locate", "treat", "deception"), check=check, unread=PLANTS_ITS_OWN,
)
