"""Run one experiment per (trigger kind, seed) cell inside a parent run, each a complete run of its own.

Cells live in <run>/cells/<trigger>-s<seed>/ with the layout of any run (config, metrics,
checkpoints, summary, W&B run grouped under the parent's name). A finished cell is read back, an
interrupted one resumed, so the parent resumes without redoing finished work. A cell runs under
the lock <run>/cells/<label>.lock, so the serial loop, local workers (whitebox/workers.py) and W&B
sweep agents (`whitebox cell`) can share one run directory without running a cell twice at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from whitebox.artifacts import read_json
from whitebox.config import ConfigError, ExperimentConfig
from whitebox.locks import hold

GRID_EXPERIMENTS = {"suppression": "treat"}  # a grid experiment -> the experiment each of its cells runs


def cell_experiment(cfg: ExperimentConfig, option: str = "--workers") -> str:
    """The experiment a grid experiment's cells run; a non-grid experiment is refused, naming `option`."""
    if cfg.experiment not in GRID_EXPERIMENTS:
        raise ConfigError(
            f"{option}: experiment {cfg.experiment!r} has no grid of cells; {option} works for grid experiments "
            f"({', '.join(GRID_EXPERIMENTS)})"
        )
    return GRID_EXPERIMENTS[cfg.experiment]


def run_or_resume(cfg: ExperimentConfig, run_dir: Path) -> dict[str, Any]:
    """The summary of the run in `run_dir`: read if complete, resumed if interrupted, else started."""
    from whitebox.runner import resume, run

    if (summary := finished_summary(run_dir)) is not None:
        return summary
    if (Path(run_dir) / "config.yaml").is_file():
        return resume(run_dir)
    return run(cfg, out=run_dir)


def cell_config(cfg: ExperimentConfig, experiment: str, trigger: str, seed: int) -> ExperimentConfig:
    """The parent's config narrowed to one cell: its experiment, trigger kind and seed."""
    data = cfg.model_dump(mode="json")
    data["experiment"] = experiment
    data["run"].update(seed=seed, name=f"{cfg.run.name}-{cell_label(trigger, seed)}")
    data["task"]["trigger"] = trigger
    data["tracking"]["wandb_group"] = cfg.tracking.wandb_group or cfg.run.name
    return ExperimentConfig.model_validate(data)


def cell_label(trigger: str, seed: int) -> str:
    return f"{trigger}-s{seed}"


def cell_dir(run_dir: Path, trigger: str, seed: int) -> Path:
    return Path(run_dir) / "cells" / cell_label(trigger, seed)


def grid_cells(cfg: ExperimentConfig) -> list[tuple[str, int]]:
    return [(trigger, seed) for trigger in cfg.grid.triggers for seed in cfg.grid.seeds]


def find_cell(cfg: ExperimentConfig, label: str) -> tuple[str, int]:
    """The (trigger, seed) cell named `label` (e.g. token-s0), or one error listing the run's cells."""
    cells = {cell_label(*cell): cell for cell in grid_cells(cfg)}
    if label not in cells:
        raise ConfigError(f"--cell {label!r}: not a cell of this run; its cells: {', '.join(cells)}")
    return cells[label]


def run_cell(cfg: ExperimentConfig, run_dir: Path, trigger: str, seed: int) -> dict[str, Any]:
    """One cell of the grid run in `run_dir` run, resumed or read back, under its lock; its summary."""
    label = cell_label(trigger, seed)
    with hold(Path(run_dir) / "cells" / f"{label}.lock", f"cell {label} of {run_dir}"):
        return run_or_resume(cell_config(cfg, cell_experiment(cfg), trigger, seed), cell_dir(run_dir, trigger, seed))


def run_cells(cfg: ExperimentConfig, run_dir: Path, workers: int = 1) -> dict[tuple[str, int], dict[str, Any]]:
    """Every (trigger, seed) cell of cfg.grid, in this process or in `workers` processes; their summaries by cell."""
    from tqdm.auto import tqdm

    if workers > 1:
        from whitebox.workers import run_in_workers

        return run_in_workers(cfg, run_dir, workers)
    out = {}
    with tqdm(grid_cells(cfg), desc="cells", unit="cell", dynamic_ncols=True) as bar:
        for trigger, seed in bar:
            bar.set_postfix_str(cell_label(trigger, seed))
            out[(trigger, seed)] = run_cell(cfg, run_dir, trigger, seed)
    return out


def check_workers(cfg: ExperimentConfig, workers: int) -> None:
    """--workers K: K >= 1, and more than one only for a grid experiment."""
    if workers < 1:
        raise ConfigError(f"--workers: must be 1 or more (got {workers})")
    if workers > 1:
        cell_experiment(cfg)


def finished_cells(cfg: ExperimentConfig, run_dir: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """The summaries of the cells that ran to completion, without running anything."""
    out = {}
    for trigger, seed in grid_cells(cfg):
        if (summary := finished_summary(cell_dir(run_dir, trigger, seed))) is not None:
            out[(trigger, seed)] = summary
    return out


def finished_summary(run_dir: Path) -> dict[str, Any] | None:
    """The summary.json of a run that ran to completion; None for one not started or not finished."""
    path = Path(run_dir) / "summary.json"
    if path.is_file() and (summary := read_json(path)).get("status") == "complete":
        return summary
    return None
