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
    data["run"].update(seed=seed, name=f"{cfg.run.name}-{trigger}-s{seed}")
    data["task"]["trigger"] = trigger
    data["tracking"]["wandb_group"] = cfg.tracking.wandb_group or cfg.run.name
    return ExperimentConfig.model_validate(data)


def run_cells(cfg: ExperimentConfig, run_dir: Path, experiment: str) -> dict[tuple[str, int], dict[str, Any]]:
    """Every (trigger, seed) cell of cfg.grid run with `experiment`; their summaries by cell."""
    return {
        (trigger, seed): run_or_resume(cell_config(cfg, experiment, trigger, seed), run_dir / "cells" / f"{trigger}-s{seed}")
        for trigger in cfg.grid.triggers
        for seed in cfg.grid.seeds
    }
