"""Tiny, fast configs shared by the tests: a run of a few dozen steps takes about a second."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
import yaml

from whitebox.config import ExperimentConfig, parse_config

TINY = {
    "experiment": "plant",
    "run": {"name": "tiny", "seed": 0},
    "model": {"arch": "native", "n_layers": 1, "d_model": 16, "n_heads": 2, "d_mlp": 32},
    "task": {"seq_len": 4, "n_values": 10, "trigger_rate": 0.2, "n_train": 256, "n_eval": 64},
    "training": {
        "steps": 24, "batch_size": 32, "lr": 3e-3, "warmup_steps": 4,
        "log_every": 2, "eval_every": 6, "checkpoint_every": 6, "keep_checkpoints": 2, "device": "cpu",
    },
    "tracking": {"wandb_mode": "disabled"},
}


@pytest.fixture
def tiny() -> ExperimentConfig:
    return parse_config(TINY)


@pytest.fixture
def tiny_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@contextlib.contextmanager
def one_thread():
    """Tiny models train fastest on one thread, and do not stall when other jobs share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
