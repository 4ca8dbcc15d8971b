"""One cell of the suppression experiment: plant, locate, treat with every regime, revive; a one-seed report."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from whitebox.config import ExperimentConfig, load_config
from whitebox.grid.cells import finished_summary
from whitebox.protocol.locate import locate
from whitebox.protocol.plant import Planted, lane_model, plant, plant_honest
from whitebox.protocol.revive import noise_control, revival_starts, revive_row, revived
from whitebox.protocol.treat import cells, prepare_treatment, treat_aware, treat_one, treated
from whitebox.report.plots import plot_training
from whitebox.report.suppression import build_report, run_curves
from whitebox.runtime.artifacts import ArtifactError
from whitebox.runtime.context import RunContext
from whitebox.runtime.experiment import PLANTS_ITS_OWN, register_experiment
from whitebox.runtime.lanes import Job, resolve_lanes, run_jobs
from whitebox.runtime.rundir import NOISE, NOVEL, RunDir, cell_name, treat_row
from whitebox.tasks import Task, get_task, require
from whitebox.training import REGIMES


def run(ctx: RunContext) -> dict[str, Any]:
    """The protocol as jobs, run side by side in run.lanes lanes where they do not depend on each other."""
    cfg, task = ctx.cfg, get_task(ctx.cfg.task)
    own = partial(lane_model, ctx, task)  # every job that trains or hooks a model has its own model object
    cell_jobs = [Job(f"treat.{cell_name(*cell)}", lambda r, cell=cell: treat_one(
        ctx, r["plant"], r["treatment"], *cell, model=own(r["plant"].path)), after=("plant", "treatment"))
        for cell in cells(cfg.treat)]
    jobs = [
        Job("plant", lambda r: _planted(ctx, task)),
        Job("plant_honest", lambda r: _timed(ctx, "plant_honest", lambda: plant_honest(ctx, task))),
        Job("locate", lambda r: _timed(ctx, "locate", lambda: locate(ctx, r["plant"])), after=("plant",)),
        Job("treatment", lambda r: prepare_treatment(ctx, r["plant"], r["locate"]), after=("plant", "locate")),
        *cell_jobs,
        Job("treated", lambda r: treated(ctx, r["plant"], r["treatment"], {
            cell: r[f"treat.{cell_name(*cell)}"] for cell in cells(cfg.treat)}), after=tuple(j.name for j in cell_jobs)),
    ]
    if cfg.revive.aware_control:
        jobs.append(Job("aware", lambda r: _timed(ctx, "aware", lambda: treat_aware(ctx, r["plant"], r["locate"])),
                        after=("plant", "locate")))
    revivals = _revival_jobs(ctx, task, own)
    results = run_jobs(jobs + revivals, resolve_lanes(cfg.run.lanes, ctx.device))
    planted, treated_ = results["plant"], results["treated"]
    revived_ = revived({j.name.removeprefix("revive."): results[j.name] for j in revivals if j.name.startswith("revive.")},
                       task.variant)
    out = {**planted.summary(), **results["locate"].summary, **treated_.summary, **revived_.summary}
    cell = (task.variant, cfg.run.seed)
    with ctx.timed("report"):
        build_report(ctx.run_dir, cfg, {cell: out}, {cell: run_curves(ctx.run_dir, cfg)})
    return out


def _planted(ctx: RunContext, task: Task) -> Planted:
    with ctx.timed("plant"):
        planted = plant(ctx, task)
        plot_training(ctx.tracker.metrics_path, "plant", ctx.dir.plot("plant"))
    return planted


def _timed(ctx: RunContext, step: str, fn: Callable[[], Any]) -> Any:
    with ctx.timed(step):
        return fn()


def _revival_jobs(ctx: RunContext, task: Task, own: Callable[[Path | None], torch.nn.Module]) -> list[Job]:
    """A job per revival row (revival_starts' rows, in its order), each after the job that saves its start; and the
    noise-matched controls, each after its cell."""
    cfg = ctx.cfg
    after = {"start": ("plant",), "fresh": (), "honest": ("plant_honest",)}
    after.update({treat_row(*cell): (f"treat.{cell_name(*cell)}",) for cell in cells(cfg.treat)})
    starts, jobs = revival_starts(ctx), []
    if cfg.revive.noise_control:
        for i, (regime, condition) in enumerate(cells(cfg.treat)):
            row, name = treat_row(regime, condition), treat_row(f"{regime}{NOISE}", condition)
            jobs.append(Job(f"noise.{name}", lambda r, row=row, i=i: noise_control(
                ctx, r["plant"], row, starts[row], i, own(None)), after=("plant", f"treat.{cell_name(regime, condition)}")))
            after[name] = (f"noise.{name}",)
    if cfg.revive.novel_control:  # the novel backdoor from the same treated weights
        for regime, condition in cells(cfg.treat):
            after[treat_row(f"{regime}{NOVEL}", condition)] = (f"treat.{cell_name(regime, condition)}",)
    after.update({row: ("aware",) for row in starts if row not in after})  # revive.aware_control's yardsticks
    return jobs + [Job(f"revive.{name}", lambda r, name=name: revive_row(ctx, task, name, starts[name], own(None)),
                       after=after[name]) for name in starts]


def check(cfg: ExperimentConfig) -> None:
    """The task supplies what plant, locate, treat and revive draw on; a regime that learns from a rater gets one."""
    task = get_task(cfg.task)
    require(task, "sample", "treatment (probes, treatment data and revival data)")
    require(task, "honest", "revival (the honest yardstick)")
    if cfg.revive.aware_control:
        require(task, "aware_honest", "revive.aware_control (the trigger-aware yardstick)")
    if cfg.revive.novel_control:
        require(task, "novel", "revive.novel_control (the novel-backdoor revival)")
    if cfg.revive.contexts == "held_out":
        require(task, "contexts", "revive.contexts: held_out (revival judged on other trigger contexts)")
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
    _, path = build_report(run_dir.root, cfg, {cell: summary}, {cell: run_curves(run_dir.root, cfg)})
    return path, []


TREAT = register_experiment(
    "treat", run, sections=("model", "task", "training", "locate", "treat", "revive"), check=check, report=rebuild_report,
    unread=PLANTS_ITS_OWN, lanes=True,
)
