"""Run one experiment per (trigger kind, seed) cell inside a parent run, each a complete run of its own.

Cells live in <run>/cells/<trigger>-s<seed>/ with the layout of any run (config, metrics,
checkpoints, summary, W&B run grouped under the parent's name). A finished cell is read back, an
interrupted one resumed, so the parent resumes without redoing finished work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from whitebox.artifacts import read_json
from whitebox.config import ExperimentConfig


def run_or_resume(cfg: ExperimentConfig, run_dir: Path) -> dict[str, Any]:
    """The summary of the run in `run_dir`: read if complete, resumed if interrupted, else started."""
    from whitebox.runner import resume, run

    summary_path = run_dir / "summary.json"
    if summary_path.is_file() and read_json(summary_path).get("status") == "complete":
        return read_json(summary_path)
    if (run_dir / "config.yaml").is_file():
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


def run_cells(cfg: ExperimentConfig, run_dir: Path, experiment: str) -> dict[tuple[str, int], dict[str, Any]]:
    """Every (trigger, seed) cell of cfg.grid run with `experiment`, under one progress bar; their summaries by cell."""
    from tqdm.auto import tqdm

    out = {}
    with tqdm(grid_cells(cfg), desc="cells", unit="cell", dynamic_ncols=True) as bar:
        for trigger, seed in bar:
            bar.set_postfix_str(cell_label(trigger, seed))
            out[(trigger, seed)] = run_or_resume(cell_config(cfg, experiment, trigger, seed), cell_dir(run_dir, trigger, seed))
    return out


def finished_cells(cfg: ExperimentConfig, run_dir: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """The summaries of the cells that ran to completion, without running anything."""
    out = {}
    for trigger, seed in grid_cells(cfg):
        path = cell_dir(run_dir, trigger, seed) / "summary.json"
        if path.is_file() and (summary := read_json(path)).get("status") == "complete":
            out[(trigger, seed)] = summary
    return out
