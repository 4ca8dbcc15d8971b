"""The Python API behind `whitebox run`: check a config against its experiment, set up a run directory, run, resume."""

from __future__ import annotations

import contextlib
import json
import os
import random
from importlib import import_module, metadata
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

import whitebox.experiments  # noqa: F401  (registers the built-in experiments)
import whitebox.variants  # noqa: F401  (and the tasks, regimes and probe kinds, built-in and plugins)
from whitebox.config import (
    ConfigError,
    ExperimentConfig,
    config_to_dict,
    dump_yaml,
    load_config,
    parse_config,
    read_yaml,
)
from whitebox.runtime import distributed, lanes
from whitebox.runtime.artifacts import write_json
from whitebox.runtime.context import RunContext
from whitebox.runtime.env import amendment, check_unchanged, differences, read_env
from whitebox.runtime.experiment import EXPERIMENTS, Experiment
from whitebox.runtime.locks import new_directory, writing
from whitebox.runtime.memory import check_config
from whitebox.runtime.records import read_summary
from whitebox.runtime.rundir import RunDir
from whitebox.runtime.tracking import Tracker, write_config
from whitebox.tasks import get_task
from whitebox.training.checkpoints import owned_by

ENTRY_POINT_GROUP = "whitebox.experiments"  # third-party experiments: a function, or an Experiment
__all__ = [  # load_config and parse_config are whitebox.config's, here with every built-in variant registered
    "EXPERIMENTS", "check_workers", "find_experiment", "grid_experiment", "load_config", "new_run_dir",
    "parse_config", "prepare", "resolve_config", "resolve_device", "resume", "run", "run_or_resume",
]


def run(
    config: ExperimentConfig | str | Path,
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Run an experiment from a config (object or YAML path) in a new run directory; return summary.json.

    `workers` > 1 runs a grid experiment's cells in that many processes (whitebox/grid/workers.py).
    Under torchrun every rank calls this; they train data-parallel and rank 0 writes the run directory.
    """
    if isinstance(config, ExperimentConfig):
        cfg = parse_config(config.model_dump(mode="json", exclude_unset=True), overrides) if overrides else config
    else:
        cfg = load_config(config, overrides)
    experiment = prepare(cfg, workers)
    cfg = resolve_config(cfg)
    with new_run_dir(cfg, experiment, out) as run_dir:
        return _execute(cfg, run_dir, experiment, workers)


def resume(run_dir: str | Path, workers: int = 1, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Continue an interrupted run from its saved config and newest checkpoints; finished work is kept.

    config.yaml must still be what env.json says the run was started with; `overrides` (KEY=VALUE)
    change settings that are safe to change mid-run, recorded in env.json as an amendment that takes
    effect from the newest checkpoint on.
    """
    run_dir = RunDir(Path(run_dir))
    if not run_dir.config.is_file():
        raise ConfigError(f"{run_dir}: no config.yaml here; --resume takes the directory of an earlier run, e.g. runs/quickstart")
    raw = read_yaml(run_dir.config)
    cfg = parse_config(raw, source=str(run_dir.config))
    experiment = prepare(cfg, workers)
    distributed.init(resolve_device(cfg.training.device))  # amendments never change the device
    with writing(run_dir):  # before anything is read that another writer may be changing
        env = read_env(run_dir.env) if run_dir.env.is_file() or run_dir.metrics.is_file() else None  # written before any record
        if env is not None:
            check_unchanged(run_dir, config_to_dict(cfg, experiment.sections), env)
        summary = read_summary(run_dir.summary) if run_dir.summary.is_file() else {}
        if overrides and summary.get("status") != "complete":
            cfg = _amend(run_dir, cfg, parse_config(raw, overrides, source=str(run_dir.config)), experiment, env, overrides)
        if summary.get("status") == "complete":
            if distributed.is_main():
                print(f"{run_dir} is already complete; nothing to resume" + (" (--set changes nothing)" if overrides else ""))
            return summary
        return _execute(cfg, run_dir, experiment, workers)


def _amend(run_dir: RunDir, cfg: ExperimentConfig, amended: ExperimentConfig, experiment: Experiment,
           env: dict[str, Any] | None, overrides: Sequence[str]) -> ExperimentConfig:
    """Write the amended config.yaml, then record the change from `cfg` in env.json; the amended config."""
    before, after = config_to_dict(cfg, experiment.sections), config_to_dict(amended, experiment.sections)
    entry = amendment(run_dir, before, after, overrides)
    if not entry["changes"]:
        return cfg
    if env is None or "config" not in env:
        raise ConfigError(f"--set: {run_dir.env} does not record the config this run was started with (a run from an "
                          "older whitebox, or one stopped before it started training); resume it without --set")
    if distributed.is_main():
        write_config(run_dir, amended, experiment.sections)  # first: killed before env.json, the refusal names the way on
        write_json(run_dir.env, {**env, "amendments": [*env.get("amendments", []), entry]})
        print(f"whitebox: amended {run_dir}: " + ", ".join(f"{k} {c['from']} -> {c['to']}" for k, c in entry["changes"].items())
              + (f" from {entry['from_checkpoint']['checkpoint']}" if entry["from_checkpoint"] else ""), flush=True)
    return amended


def run_or_resume(cfg: ExperimentConfig, run_dir: Path) -> dict[str, Any]:
    """The summary of the run in `run_dir`: read if complete, resumed if interrupted, else started (a grid's subrun).

    A run already there whose config differs from `cfg` only in settings a resume may change (the
    parent was amended) is amended the same way; any other difference is refused, naming the key.
    """
    saved = RunDir(run_dir)
    if not saved.config.is_file():
        return run(cfg, out=run_dir)
    sections = find_experiment(cfg.experiment).sections
    changed = differences(config_to_dict(load_config(saved.config), sections), config_to_dict(resolve_config(cfg), sections))
    return resume(run_dir, overrides=[f"{key}={json.dumps(now)}" for key, (_, now) in changed.items()])


def prepare(cfg: ExperimentConfig, workers: int = 1) -> Experiment:
    """The config's experiment, after its config-time checks: sections it reads, its own check, --workers, memory."""
    experiment = find_experiment(cfg.experiment)
    experiment.validate(cfg)
    check_workers(experiment, workers)
    task = get_task(cfg.task)
    if cfg.model.source == "pretrained" and not task.uses_model_tokenizer:
        raise ConfigError(f"model.source: a pretrained model reads text with its own tokenizer, but task {task.name!r} "
                          "makes token ids of its own vocabulary; use model.source: from_config (or a text task)")
    check_config(cfg, experiment.sections, task)
    return experiment


def check_workers(experiment: Experiment, workers: int, option: str = "--workers") -> None:
    """--workers K: K >= 1, and more than one only for a grid experiment."""
    if workers < 1:
        raise ConfigError(f"{option}: must be 1 or more (got {workers})")
    if workers > 1:
        grid_experiment(experiment, option)


def grid_experiment(experiment: Experiment, option: str) -> Experiment:
    """The experiment a grid experiment's cells run; a non-grid experiment is refused, naming `option`."""
    if experiment.cells is None:
        grids = ", ".join(name for name, e in EXPERIMENTS.items() if e.cells is not None)
        raise ConfigError(f"{option}: experiment {experiment.name!r} has no grid of cells; {option} works for grid "
                          f"experiments ({grids})")
    return find_experiment(experiment.cells)


@contextlib.contextmanager
def new_run_dir(cfg: ExperimentConfig, experiment: Experiment, out: str | Path | None = None) -> Iterator[RunDir]:
    """Create the run directory (`out`, default <run.out_dir>/<run.name>) with its config.yaml and hold its
    run.lock for the block; never reuse one (a new or empty directory only: not even one of hidden files)."""
    run_dir = RunDir(Path(out) if out is not None else Path(cfg.run.out_dir) / cfg.run.name)
    distributed.init(resolve_device(cfg.training.device))
    with new_directory(run_dir.root, _taken) as run_dir:
        write_config(run_dir, cfg, experiment.sections)  # a refused write raises WriteFailed
        yield run_dir


def _taken(root: Path) -> str:
    """Why `root` cannot be a new run's directory, and the way on."""
    if RunDir(root).config.is_file():
        return (f"{root} already exists and holds a run; continue it with `whitebox run --resume {root}`, "
                "or start a new one with --out DIR or --set run.name=NEW_NAME")
    what = "is a file" if root.exists() and not root.is_dir() else "already exists and is not empty"
    return f"{root} {what}, and a run directory must be new or empty; give --out a new DIR or --set run.name=NEW_NAME"


def resolve_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """Fill the model's vocabulary and context size from the task, and check explicit values fit (a pretrained
    model, or a task of texts, keeps the checkpoint's own)."""
    task = get_task(cfg.task)
    if cfg.model.source == "pretrained" or task.uses_model_tokenizer:
        return cfg
    vocab, length = len(task.vocabulary()), task.seq_len()
    model = cfg.model
    if model.d_vocab is not None and model.d_vocab < vocab:
        raise ConfigError(f"model.d_vocab: {model.d_vocab} is smaller than the task's vocabulary ({vocab}); leave it unset")
    if model.n_ctx is not None and model.n_ctx < length:
        raise ConfigError(f"model.n_ctx: {model.n_ctx} is shorter than the task's inputs ({length} tokens); leave it unset")
    model = model.model_copy(update={"d_vocab": model.d_vocab or vocab, "n_ctx": model.n_ctx or length})
    return cfg.model_copy(update={"model": model})


def find_experiment(name: str) -> Experiment:
    """A registered experiment, an installed plugin (entry point), or any `module:function` path."""
    if name in EXPERIMENTS:
        return EXPERIMENTS[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return _as_experiment(name, getattr(import_module(module), attr))
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"experiment: cannot import {name!r} ({err})") from None
    plugins = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    if name not in plugins:
        known = sorted([*EXPERIMENTS, *plugins])
        raise ConfigError(f"experiment: unknown experiment {name!r}; registered: {', '.join(known)} (or give module:function)")
    return _as_experiment(name, plugins[name].load())


def _as_experiment(name: str, found: Any) -> Experiment:
    """A plugin's Experiment as it is; a bare pipeline function reads every section (nothing can be refused)."""
    if isinstance(found, Experiment):
        return found
    sections = tuple(s for s in ExperimentConfig.model_fields if s not in ("experiment", "run", "tracking"))
    return Experiment(name, found, sections)


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


def _execute(cfg: ExperimentConfig, run_dir: RunDir, experiment: Experiment, workers: int = 1) -> dict[str, Any]:
    device = resolve_device(cfg.training.device)
    world = f", {distributed.world_size()} processes" if distributed.active() else ""
    with _main_prints():
        print(f"whitebox: run directory {run_dir} (device {device}{world})\n{dump_yaml(cfg, experiment.sections)}", flush=True)
        seed_everything(cfg.run.seed)
        lanes.STOP.clear()  # a Ctrl-C of an earlier run in this process is not this run's
        tracker = Tracker(run_dir, cfg, experiment.sections).start(str(device))
        try:
            tracker.update_summary({"status": "running"})
            ctx = RunContext(cfg, run_dir, tracker, device, run_or_resume, workers)
            with owned_by(tracker.owner()), ctx.timed("total"):  # checkpoints of this run only
                results = experiment.run(ctx)
            print(timing_line(ctx.timing), flush=True)
            return tracker.update_summary({**results, **ctx.timing, "status": "complete"})
        finally:
            tracker.finish()


def timing_line(timing: dict[str, float]) -> str:
    """One line: the run's wall time, then each timed step's, largest first."""
    steps = sorted(((k.removeprefix("timing."), v) for k, v in timing.items() if k != "timing.total"), key=lambda kv: -kv[1])
    parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in steps)
    return f"whitebox: wall time {timing.get('timing.total', 0.0):.1f} s (this process)" + (f"; by step, s: {parts}" if parts else "")


@contextlib.contextmanager
def _main_prints() -> Iterator[None]:
    """Under torchrun only rank 0 prints progress; the other ranks' stdout goes nowhere (stderr stays)."""
    if distributed.is_main():
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield
