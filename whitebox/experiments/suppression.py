"""The suppression experiment: every (trigger, seed) cell planted, located, treated and revived; one report."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from whitebox.config import ExperimentConfig, load_config
from whitebox.experiments.treat import TREAT
from whitebox.grid import cell_dir, finished_cells, grid_cells, run_cells
from whitebox.grid.cells import Cell, check_cells
from whitebox.grid.records import read_record, results_dir, write_config
from whitebox.report.suppression import Curves, build_report, report_curves, run_curves
from whitebox.runtime.artifacts import ArtifactError
from whitebox.runtime.context import RunContext
from whitebox.runtime.experiment import PLANTS_ITS_OWN, register_experiment
from whitebox.runtime.rundir import RunDir, cell_label


def run(ctx: RunContext) -> dict[str, Any]:
    if ctx.cfg.grid.results is not None:
        write_config(Path(ctx.cfg.grid.results), ctx.cfg, SECTIONS)
    cells = run_cells(ctx.cfg, ctx.run_dir, TREAT, ctx.subrun, workers=ctx.workers)
    summary, _ = build_report(ctx.run_dir, ctx.cfg, cells, curves(ctx.cfg, ctx.run_dir, cells))
    ctx.tracker.log_images({p.stem: p for p in sorted(ctx.dir.plots.glob("treat_*.png"))})
    return summary


def curves(cfg: ExperimentConfig, run_dir: Path, cells: Iterable[Cell], results: Path | None = None) -> dict[Cell, Curves]:
    """Each cell's treatment curves: from its record where the grid records cells (grid.results, or `results`), else
    from its metrics.jsonl."""
    results = results_dir(cfg, results)
    out = {}
    for cell in cells:
        record = None if results is None else read_record(results, cell_label(*cell))
        out[cell] = report_curves(record["curves"], cfg) if record is not None else run_curves(cell_dir(run_dir, *cell), cfg)
    return out


def check(cfg: ExperimentConfig) -> None:
    """Every cell's config is valid and its task supplies what a treat run needs."""
    check_cells(cfg, TREAT)
    TREAT.check(cfg)


def rebuild_report(run_dir: Path) -> tuple[Path, list[str]]:
    """`whitebox report` on a suppression run, or on a grid.results directory of cell records: the report over the cells
    that finished; (path, cells not finished)."""
    run_dir = RunDir(run_dir)
    cfg = load_config(run_dir.config)
    records = None if (run_dir.root / "cells").is_dir() else run_dir.root  # a grid.results directory: records only
    cells = finished_cells(cfg, run_dir.root, records)
    if not cells:
        raise ArtifactError(f"{run_dir}: no finished cell under cells/ yet; run or resume it with "
                            f"`whitebox run --resume {run_dir}`")
    missing = [cell_label(*cell) for cell in grid_cells(cfg) if cell not in cells]
    _, path = build_report(run_dir.root, cfg, cells, curves(cfg, run_dir.root, cells, records), missing)
    return path, missing


SECTIONS = ("grid", "model", "task", "training", "locate", "treat", "revive")
SUPPRESSION = register_experiment(
    "suppression", run, sections=SECTIONS,
    check=check, cells="treat", report=rebuild_report, unread=PLANTS_ITS_OWN, lanes=True,
)
