"""The suppression experiment: every (trigger, seed) cell planted, located, treated and revived; one report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from whitebox.config import ExperimentConfig, load_config
from whitebox.experiments.treat import TREAT
from whitebox.grid import cell_dir, finished_cells, grid_cells, run_cells
from whitebox.grid.cells import check_cells
from whitebox.report.suppression import build_report
from whitebox.runtime.artifacts import ArtifactError
from whitebox.runtime.context import RunContext
from whitebox.runtime.experiment import PLANTS_ITS_OWN, register_experiment
from whitebox.runtime.rundir import RunDir, cell_label


def run(ctx: RunContext) -> dict[str, Any]:
    cells = run_cells(ctx.cfg, ctx.run_dir, TREAT, ctx.subrun, workers=ctx.workers)
    summary, _ = build_report(ctx.run_dir, ctx.cfg, cells, {cell: cell_dir(ctx.run_dir, *cell) for cell in cells})
    ctx.tracker.log_images({p.stem: p for p in sorted(ctx.dir.plots.glob("treat_*.png"))})
    return summary


def check(cfg: ExperimentConfig) -> None:
    """Every cell's config is valid and its task supplies what a treat run needs."""
    check_cells(cfg, TREAT)
    TREAT.check(cfg)


def rebuild_report(run_dir: Path) -> tuple[Path, list[str]]:
    """`whitebox report` on a suppression run: the report over the cells that finished; (path, cells not finished)."""
    run_dir = RunDir(run_dir)
    cfg = load_config(run_dir.config)
    cells = finished_cells(cfg, run_dir.root)
    if not cells:
        raise ArtifactError(f"{run_dir}: no finished cell under cells/ yet; run or resume it with "
                            f"`whitebox run --resume {run_dir}`")
    dirs = {cell: cell_dir(run_dir.root, *cell) for cell in cells}
    missing = [cell_label(*cell) for cell in grid_cells(cfg) if cell not in cells]
    _, path = build_report(run_dir.root, cfg, cells, dirs, missing)
    return path, missing


SUPPRESSION = register_experiment(
    "suppression", run, sections=("grid", "model", "task", "training", "locate", "treat", "revive"),
    check=check, cells="treat", report=rebuild_report, unread=PLANTS_ITS_OWN, lanes=True,
)
