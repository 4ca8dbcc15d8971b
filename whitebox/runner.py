"""The Python API behind `whitebox run`: set up a run directory, run an experiment, resume one."""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from importlib import import_module, metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from whitebox import distributed
from whitebox.config import ConfigError, ExperimentConfig, config_to_dict, dump_yaml, load_config, parse_config
from whitebox.grid import check_workers
from whitebox.tasks import get_task
from whitebox.tracking import Tracker, write_config

ENTRY_POINT_GROUP = "whitebox.experiments"


@dataclass
class RunContext:
    """What an experiment pipeline gets: its config, its directory, the tracker and the device."""

    cfg: ExperimentConfig
    run_dir: Path
    tracker: Tracker
    device: torch.device
    workers: int = 1  # processes a grid experiment may run its cells in (`whitebox run --workers`)


Experiment = Callable[[RunContext], dict[str, Any]]


def run(
    config: ExperimentConfig | str | Path,
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Run an experiment from a config (object or YAML path) in a new run directory; return summary.json.

    `workers` > 1 runs a grid experiment's cells in that many processes (whitebox/workers.py).
    Under torchrun every rank calls this; they train data-parallel and rank 0 writes the run directory.
    """
    if isinstance(config, ExperimentConfig):
        cfg = parse_config(config_to_dict(config), overrides) if overrides else config
    else:
        cfg = load_config(config, overrides)
    cfg = resolve_config(cfg)
    experiment = find_experiment(cfg.experiment)
    check_workers(cfg, workers)
    run_dir = new_run_dir(cfg, out)
    return _execute(cfg, run_dir, experiment, workers)


def resume(run_dir: str | Path, workers: int = 1) -> dict[str, Any]:
    """Continue an interrupted run from its saved config and newest checkpoints; finished work is kept."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir}: no config.yaml here; --resume takes the directory of an earlier run, e.g. runs/quickstart")
    cfg = load_config(run_dir / "config.yaml")
    check_workers(cfg, workers)
    distributed.init(resolve_device(cfg.training.device))
    tracker = Tracker(run_dir, cfg)
    if tracker.summary().get("status") == "complete":
        if distributed.is_main():
            print(f"{run_dir} is already complete; nothing to resume")
        return tracker.summary()
    return _execute(cfg, run_dir, find_experiment(cfg.experiment), workers)


def new_run_dir(cfg: ExperimentConfig, out: str | Path | None = None) -> Path:
    """Create the run directory (`out`, default <run.out_dir>/<run.name>) with its config.yaml; never reuse one."""
    run_dir = Path(out) if out is not None else Path(cfg.run.out_dir) / cfg.run.name
    distributed.init(resolve_device(cfg.training.device))
    # hidden files are temporaries of a run killed before its config.yaml landed: starting again is safe
    if run_dir.exists() and (not run_dir.is_dir() or any(not p.name.startswith(".") for p in run_dir.iterdir())):
        raise ConfigError(
            f"{run_dir} already exists; continue that run with `whitebox run --resume {run_dir}`, "
            "or start a new one with --out DIR or --set run.name=NEW_NAME"
        )
    distributed.barrier()  # every rank has looked before rank 0 creates it
    write_config(run_dir, cfg)  # creates the directory; a refused write raises WriteFailed
    return run_dir


def resolve_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """Fill the model's vocabulary and context size from the task, and check explicit values fit."""
    task = get_task(cfg.task.name)
    vocab, length = len(task.vocabulary(cfg.task)), task.seq_len(cfg.task)
    model = cfg.model
    if model.d_vocab is not None and model.d_vocab < vocab:
        raise ConfigError(f"model.d_vocab: {model.d_vocab} is smaller than the task's vocabulary ({vocab}); leave it unset")
    if model.n_ctx is not None and model.n_ctx < length:
        raise ConfigError(f"model.n_ctx: {model.n_ctx} is shorter than the task's inputs ({length} tokens); leave it unset")
    model = model.model_copy(update={"d_vocab": model.d_vocab or vocab, "n_ctx": model.n_ctx or length})
    return cfg.model_copy(update={"model": model})


def find_experiment(name: str) -> Experiment:
    """An installed pipeline by entry-point name, or any `module:function` path."""
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"experiment: cannot import {name!r} ({err})") from None
    found = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    if name not in found:
        raise ConfigError(
            f"experiment: unknown experiment {name!r}; installed: {', '.join(sorted(found)) or 'none'} "
            "(or give module:function)"
        )
    return found[name].load()


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, else the CPU; an explicit device must exist. Under torchrun a
    CUDA device without an index is this process's own GPU (LOCAL_RANK)."""
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)
    if device.type == "cuda" and distributed.launched():
        if device.index is not None:
            raise ConfigError(f"training.device: {name!r} would put every torchrun process on one GPU; use cuda or auto")
        device = torch.device("cuda", distributed.local_rank())
    if name == "auto":
        return device
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"training.device: {name!r} asked for but no CUDA device is visible; use auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"training.device: {name!r} asked for but MPS is not available; use auto or cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _execute(cfg: ExperimentConfig, run_dir: Path, experiment: Experiment, workers: int = 1) -> dict[str, Any]:
    device = resolve_device(cfg.training.device)
    world = f", {distributed.world_size()} processes" if distributed.active() else ""
    with _main_prints():
        print(f"whitebox: run directory {run_dir} (device {device}{world})\n{dump_yaml(cfg)}", flush=True)
        seed_everything(cfg.run.seed)
        tracker = Tracker(run_dir, cfg).start(str(device))
        try:
            tracker.update_summary({"status": "running"})
            results = experiment(RunContext(cfg, run_dir, tracker, device, workers))
            return tracker.update_summary({**results, "status": "complete"})
        finally:
            tracker.finish()


@contextlib.contextmanager
def _main_prints() -> Iterator[None]:
    """Under torchrun only rank 0 prints progress; the other ranks' stdout goes nowhere (stderr stays)."""
    if distributed.is_main():
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield
