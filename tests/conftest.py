"""Tiny, fast configs shared by the tests: a run of a few dozen steps takes about a second."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
import yaml

import whitebox.runner  # noqa: F401  (registers every built-in task, regime, probe kind and experiment)
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
def torch_threads(count: int):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def one_thread():
    """Tiny models train fastest on one thread, and do not stall when other jobs share the cores."""
    return torch_threads(1)


@pytest.fixture
def isolated_registries():
    """Registrations made inside the test (tasks, regimes, probe kinds, experiments) are undone after it.

    The registries are module-level tables and the config models' open slots; both are restored,
    so a test that registers a variant leaves the schema and the config reference as they were.
    """
    from whitebox.config import schema, slots
    from whitebox.probes import kinds
    from whitebox.runtime import experiment
    from whitebox.tasks import base
    from whitebox.training import regimes

    tables = [slots._TASKS, slots._REGIMES, slots._PROBE_KINDS, base._TASKS, regimes.REGIMES, kinds.PROBE_KINDS,
              experiment.EXPERIMENTS]
    saved = [dict(t) for t in tables]
    models = [schema.TreatConfig, schema.ExperimentConfig]  # inner first: the outer model embeds the inner's schema
    fields = [dict(m.model_fields) for m in models]
    try:
        yield
    finally:
        for table, copy in zip(tables, saved):
            table.clear()
            table.update(copy)
        for model, copy in zip(models, fields):
            model.model_fields.clear()
            model.model_fields.update(copy)
            model.model_rebuild(force=True)
