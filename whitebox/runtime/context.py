"""What an experiment and every protocol step get from the runner: the config, the run directory, the tracker, the device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from whitebox.config import ExperimentConfig
from whitebox.runtime.rundir import RunDir
from whitebox.runtime.tracking import Tracker


@dataclass
class RunContext:
    """One run in progress: its validated config, its directory, the tracker and the device it trains on."""

    cfg: ExperimentConfig
    dir: RunDir
    tracker: Tracker
    device: torch.device
    subrun: Callable[[ExperimentConfig, Path], dict[str, Any]]  # run, resume or read back a run in a directory
    workers: int = 1  # processes a grid experiment may run its cells in (`whitebox run --workers`)

    @property
    def run_dir(self) -> Path:
        return self.dir.root
