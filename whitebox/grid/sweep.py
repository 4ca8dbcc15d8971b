"""`whitebox sweep`: a grid run's cells as a W&B sweep, so `wandb agent` on any machine runs them.

The sweep is method `grid` over one parameter, `cell` (token-s0, ...); its command is
`python -m whitebox cell RUN_DIR --cell=<label>`, so every agent run is one cell written into the
shared run directory (by its absolute path: agents on other machines need it at the same path).
W&B only schedules: the files in the run directory stay the record, `whitebox report` merges them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from whitebox.config import ExperimentConfig
from whitebox.grid.cells import grid_cells
from whitebox.runtime.artifacts import write_text
from whitebox.runtime.rundir import RunDir, cell_label


def sweep_definition(cfg: ExperimentConfig, run_dir: Path) -> dict[str, Any]:
    """The W&B sweep configuration: one agent run per cell of cfg.grid."""
    run_dir = Path(run_dir).resolve()
    definition = {
        "name": cfg.run.name,
        "description": f"whitebox {cfg.experiment} grid, one cell per run, written into {run_dir}",
        "project": cfg.tracking.wandb_project,
        "entity": cfg.tracking.wandb_entity,
        "method": "grid",
        "parameters": {"cell": {"values": [cell_label(*cell) for cell in grid_cells(cfg)]}},
        "command": ["${env}", "${interpreter}", "-m", "whitebox", "cell", str(run_dir), "${args}"],
    }
    return {k: v for k, v in definition.items() if v is not None}


def write_sweep(cfg: ExperimentConfig, run_dir: Path) -> Path:
    """sweep.yaml in the parent run directory (created by the runner, with its config.yaml); its path."""
    definition = sweep_definition(cfg, run_dir)
    return write_text(RunDir(Path(run_dir).resolve()).sweep, yaml.safe_dump(definition, sort_keys=False))


def instructions(cfg: ExperimentConfig, run_dir: Path, sweep_file: Path) -> str:
    """What to type next: create the sweep, start agents, merge the cells (or run them without W&B)."""
    labels = [cell_label(*cell) for cell in grid_cells(cfg)]
    project = f"{cfg.tracking.wandb_entity or '<entity>'}/{cfg.tracking.wandb_project}"
    steps = [
        (f"wandb sweep {sweep_file}", "registers the sweep and prints its id"),
        (f"wandb agent {project}/<sweep-id>", "on any machine, as many as you like: each run is one cell"),
        (f"whitebox report {run_dir}", "the report over the finished cells (partial until all are)"),
        (f"whitebox run --resume {run_dir} --workers K", "or, without W&B: the cells left, in K local processes"),
    ]
    width = max(len(command) for command, _ in steps)
    lines = [
        f"sweep: {sweep_file} ({len(labels)} cells: {', '.join(labels)})",
        f"run directory: {run_dir} (agents on other machines need it at this same path)",
        "",
        *(f"  {command:<{width}}  # {why}" for command, why in steps),
    ]
    mode = cfg.tracking.wandb_mode
    if mode != "online":
        kept = "each cell's W&B run stays under its directory for `wandb sync`" if mode == "offline" else "no W&B runs are kept"
        lines.append(f"note: tracking.wandb_mode is {mode}, so the cells' metrics do not reach the sweep's page ({kept}); "
                     "add --set tracking.wandb_mode=online to stream them")
    return "\n".join(lines)
