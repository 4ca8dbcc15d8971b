"""One cell of the suppression experiment: plant, locate, treat with every regime, revive; a one-seed report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from whitebox.config import ExperimentConfig, load_config
from whitebox.grid.cells import finished_summary
from whitebox.protocol.locate import locate
from whitebox.protocol.plant import plant
from whitebox.protocol.revive import revive_all
from whitebox.protocol.treat import treat, treat_aware
from whitebox.report.plots import plot_training
from whitebox.report.suppression import build_report
from whitebox.runtime.artifacts import ArtifactError
from whitebox.runtime.context import RunContext
from whitebox.runtime.experiment import PLANTS_ITS_OWN, register_experiment
from whitebox.runtime.rundir import RunDir
from whitebox.tasks import get_task, require
from whitebox.training import REGIMES


def run(ctx: RunContext) -> dict[str, Any]:
    with ctx.timed("plant"):
        planted = plant(ctx, get_task(ctx.cfg.task))
        plot_training(ctx.tracker.metrics_path, "plant", ctx.dir.plot("plant"))
    with ctx.timed("locate"):
        located = locate(ctx, planted)
    treated = treat(ctx, planted, located)
    if ctx.cfg.revive.aware_control:
        with ctx.timed("aware"):
            treated.yardsticks.update(treat_aware(ctx, planted, located))
    revived = revive_all(ctx, planted, treated)
    out = {**planted.summary(), **located.summary, **treated.summary, **revived.summary}
    cell = (planted.task.variant, ctx.cfg.run.seed)
    with ctx.timed("report"):
        build_report(ctx.run_dir, ctx.cfg, {cell: out}, {cell: ctx.run_dir})
    return out


def check(cfg: ExperimentConfig) -> None:
    """The task supplies what plant, locate, treat and revive draw on; a regime that learns from a rater gets one."""
    task = get_task(cfg.task)
    require(task, "sample", "treatment (probes, treatment data and revival data)")
    require(task, "honest", "revival (the honest yardstick)")
    if cfg.revive.aware_control:
        require(task, "aware_honest", "revive.aware_control (the trigger-aware yardstick)")
    for name in cfg.treat.regimes:
        if REGIMES[name].wants_rater(cfg.treat.settings(name)):
            require(task, "rater", f"regime {name!r}")


def rebuild_report(run_dir: Path) -> tuple[Path, list[str]]:
    """`whitebox report` on a finished treat run: report.md and plots again from its files; (path, [])."""
    run_dir = RunDir(run_dir)
    cfg = load_config(run_dir.config)
    summary = finished_summary(run_dir.root)
    if summary is None:
        raise ArtifactError(f"{run_dir}: the treat run has not finished; run or resume it with `whitebox run --resume {run_dir}`")
    cell = (get_task(cfg.task).variant, cfg.run.seed)
    _, path = build_report(run_dir.root, cfg, {cell: summary}, {cell: run_dir.root})
    return path, []


TREAT = register_experiment(
    "treat", run, sections=("model", "task", "training", "locate", "treat", "revive"), check=check, report=rebuild_report, unread=PLANTS_ITS_OWN,
)
