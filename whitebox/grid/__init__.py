"""Many cells of one experiment: cells (each a complete run, under a lock), local workers, W&B sweeps.

The grid is handed the runner's `subrun` (run, resume or read back one run) and never imports the
runner, so the runner can look experiments up by name without an import cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from whitebox.config import ExperimentConfig
from whitebox.grid.cells import Cell, Subrun, cell_dir, finished_cells, grid_cells, run_serial
from whitebox.grid.workers import run_in_workers
from whitebox.runtime.experiment import Experiment

__all__ = ["Cell", "Subrun", "cell_dir", "finished_cells", "grid_cells", "run_cells"]


def run_cells(cfg: ExperimentConfig, run_dir: Path, cell: Experiment, subrun: Subrun, workers: int = 1) -> dict[Cell, dict[str, Any]]:
    """Every cell of cfg.grid, in this process or in `workers` processes; their summaries by cell."""
    if workers > 1:
        return run_in_workers(cfg, run_dir, workers)
    return run_serial(cfg, run_dir, cell, subrun)
