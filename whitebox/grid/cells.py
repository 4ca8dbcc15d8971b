"""Run one experiment per (task variant, seed) cell inside a parent run, each a complete run of its own.

Cells live in <run>/cells/<variant>-s<seed>/ with the layout of any run (config, metrics,
checkpoints, summary, W&B run grouped under the parent's name). A finished cell is read back, an
interrupted one resumed, so the parent resumes without redoing finished work. A cell runs under
the lock <run>/cells/<label>.lock, so the serial loop, local workers (whitebox/grid/workers.py) and
W&B sweep agents (`whitebox cell`) can share one run directory without running a cell twice at once.

The variant is the value of the task's variant key (the backdoor's `trigger`) from grid.triggers, or
a set of task-key overrides from grid.variants; either way a cell is named by the task's variant label.
The grid never starts a run itself: it is handed `subrun`, the runner's "run, resume or read back
the run of this config in this directory".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from whitebox.config import ConfigError, ExperimentConfig, config_to_dict
from whitebox.grid.records import read_record, results_dir, write_record
from whitebox.runtime.experiment import Experiment
from whitebox.runtime.locks import hold
from whitebox.runtime.records import read_summary
from whitebox.runtime.rundir import RunDir, cell_label
from whitebox.tasks import get_task

Subrun = Callable[[ExperimentConfig, Path], dict[str, Any]]
"""(config, run directory) -> its summary: read if complete, resumed if interrupted, else started."""

Cell = tuple[str, int]  # (task variant, seed)


def grid_variants(cfg: ExperimentConfig) -> dict[str, dict[str, Any]]:
    """The grid's task variants by label (what cells and summary keys call them): their task-key overrides."""
    key = get_task(cfg.task).variant_key
    if key is None:
        raise ConfigError(f"grid: task {cfg.task.name!r} has no variants for a grid to vary; use a task that has")
    given = cfg.grid.variants if cfg.grid.variants is not None else [{key: value} for value in cfg.grid.triggers]
    where = "grid.variants" if cfg.grid.variants is not None else "grid.triggers"
    out: dict[str, dict[str, Any]] = {}
    for overrides in given:
        try:
            task = get_task(type(cfg.task).model_validate({**cfg.task.model_dump(), **overrides}))
        except ValueError as err:  # a key or value the task does not have
            raise ConfigError(f"{where}: {overrides} is not a valid variant of task {cfg.task.name!r} "
                              f"({' '.join(str(err).split())[:200]})") from None
        if task.variant in out:
            raise ConfigError(f"{where}: two variants are both {task.variant!r}; give each cell a different task variant")
        out[task.variant] = overrides
    return out


def cell_config(cfg: ExperimentConfig, cell: Experiment, variant: str, seed: int) -> ExperimentConfig:
    """The parent's config narrowed to one cell: its experiment and the sections it reads, its variant and seed."""
    data = config_to_dict(cfg, cell.sections)
    data["experiment"] = cell.name
    data["run"].update(seed=seed, name=f"{cfg.run.name}-{cell_label(variant, seed)}")
    data["task"].update(grid_variants(cfg)[variant])
    data["tracking"]["wandb_group"] = cfg.tracking.wandb_group or cfg.run.name
    try:
        return ExperimentConfig.model_validate(data)
    except ValueError as err:
        raise ConfigError(f"grid: cell {cell_label(variant, seed)} has no valid config "
                          f"({' '.join(str(err).split())[:300]})") from None


def cell_dir(run_dir: Path, variant: str, seed: int) -> Path:
    return RunDir(run_dir).cell(cell_label(variant, seed))


def grid_cells(cfg: ExperimentConfig) -> list[Cell]:
    return [(variant, seed) for variant in grid_variants(cfg) for seed in cfg.grid.seeds]


def check_cells(cfg: ExperimentConfig, cell: Experiment) -> None:
    """Every cell's config validates (before any cell runs): a variant the task lacks is one ConfigError."""
    for variant in grid_variants(cfg):
        cell_config(cfg, cell, variant, cfg.grid.seeds[0])


def find_cell(cfg: ExperimentConfig, label: str) -> Cell:
    """The (variant, seed) cell named `label` (e.g. token-s0), or one error listing the run's cells."""
    cells = {cell_label(*cell): cell for cell in grid_cells(cfg)}
    if label not in cells:
        raise ConfigError(f"--cell {label!r}: not a cell of this run; its cells: {', '.join(cells)}")
    return cells[label]


def run_cell(cfg: ExperimentConfig, run_dir: Path, variant: str, seed: int, cell: Experiment, subrun: Subrun) -> dict[str, Any]:
    """One cell of the grid run in `run_dir` run, resumed or read back, under its lock; its summary.

    With grid.results, a cell recorded there is read from its record, and a cell that finishes is recorded.
    """
    label, cell_cfg, results = cell_label(variant, seed), cell_config(cfg, cell, variant, seed), cfg.grid.results
    if results is not None and (record := read_record(Path(results), label, cell_cfg, cell.sections)) is not None:
        return record["summary"]  # committed by an earlier run, maybe on another machine
    with hold(RunDir(run_dir).cell_lock(label), f"cell {label} of {run_dir}"):
        summary = subrun(cell_cfg, cell_dir(run_dir, variant, seed))
        if results is not None:
            write_record(Path(results), label, cell_cfg, cell.sections, cell_dir(run_dir, variant, seed))
    return summary


def run_serial(cfg: ExperimentConfig, run_dir: Path, cell: Experiment, subrun: Subrun) -> dict[Cell, dict[str, Any]]:
    """Every cell of cfg.grid, one after the other in this process; their summaries by cell."""
    out = {}
    with tqdm(grid_cells(cfg), desc="cells", unit="cell", dynamic_ncols=True) as bar:
        for variant, seed in bar:
            bar.set_postfix_str(cell_label(variant, seed))
            out[(variant, seed)] = run_cell(cfg, run_dir, variant, seed, cell, subrun)
    return out


def finished_cells(cfg: ExperimentConfig, run_dir: Path, results: Path | None = None) -> dict[Cell, dict[str, Any]]:
    """The summaries of the cells that ran to completion (under run_dir/cells/, or recorded in grid.results or
    `results`), running nothing."""
    results = results_dir(cfg, results)
    out = {}
    for variant, seed in grid_cells(cfg):
        if (summary := finished_summary(cell_dir(run_dir, variant, seed))) is not None:
            out[(variant, seed)] = summary
        elif results is not None and (record := read_record(results, cell_label(variant, seed))) is not None:
            out[(variant, seed)] = record["summary"]
    return out


def finished_summary(run_dir: Path) -> dict[str, Any] | None:
    """The summary.json of a run that ran to completion; None for one not started or not finished."""
    path = RunDir(run_dir).summary
    if path.is_file() and (summary := read_summary(path)).get("status") == "complete":
        return summary
    return None
