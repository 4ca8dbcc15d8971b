"""What an experiment and every protocol step get from the runner: the config, the run directory, the tracker, the device."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from whitebox.config import ExperimentConfig
from whitebox.runtime.records import TIMING
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
    timing: dict[str, float] = field(default_factory=dict)  # wall seconds by step, this process (summary keys timing.*)

    @property
    def run_dir(self) -> Path:
        return self.dir.root

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Add the block's wall time to timing.<step>: where a run's time goes, written to summary.json at the end."""
        start = time.perf_counter()
        try:
            yield
        finally:
            key = f"{TIMING}{step}"
            self.timing[key] = round(self.timing.get(key, 0.0) + time.perf_counter() - start, 3)
