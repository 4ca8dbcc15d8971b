"""Protocol step 1: train a model on a task with a hidden behaviour and save it as an artifact."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from whitebox.config import ModelConfig
from whitebox.models import META, build_model, load_weights, read_model_meta, save_model
from whitebox.runtime.context import RunContext
from whitebox.runtime.lanes import seeded
from whitebox.runtime.rundir import step_keys
from whitebox.tasks import Task, require
from whitebox.training import Backprop, supervised, train
from whitebox.training.objectives import through_compiled

Evaluate = Callable[[torch.nn.Module], dict[str, float]]


@dataclass
class Planted:
    """A trained model, the task it was trained on, its held-out metrics and where it is saved."""

    model: torch.nn.Module
    model_cfg: ModelConfig
    task: Task
    path: Path  # models/<name>: model.safetensors + model.json
    metrics: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """The step's summary keys: plant.<metric>."""
        return step_keys("plant", self.metrics)


def plant(run: RunContext, task: Task, evaluate: Evaluate | None = None, *, name: str = "planted",
          stage: str = "plant") -> Planted:
    """Train from scratch (or resume) on `task`; save models/<name>; return the planted model and its held-out metrics.

    A model saved by an earlier, interrupted run of the same directory is loaded, not trained again.
    `evaluate` replaces the task's held-out evaluation, e.g. with richer progress measures.
    """
    cfg = run.cfg
    vocab = task.vocabulary()
    with seeded(cfg.run.seed):
        model = build_model(cfg.model, vocab, run.device)
    saved = run.dir.model(name)
    if (saved / META).is_file():  # planted before an interruption (model.json is written last): read back
        load_weights(model, cfg.model, saved)
        return Planted(model, cfg.model, task, saved, read_model_meta(saved)["metrics"])
    held_out = task.eval_set(cfg.run.seed)
    rows = task.train_set(cfg.run.seed).select_columns(["tokens", "target"])[:]
    data = {k: v.to(run.device) for k, v in rows.items()}
    metrics = train(
        model,
        Backprop(model, cfg.training, run.device),
        through_compiled(supervised, model) if cfg.training.compile else supervised,
        data,
        cfg.training,
        seed=cfg.run.seed,
        evaluate=evaluate or (lambda m: task.evaluate(m, held_out)),
        checkpoint_dir=run.dir.checkpoints(stage),
        log=run.tracker.stage(stage),
        desc=stage,
    )
    extra: dict[str, Any] = {"vocab": vocab, "task": task.config.model_dump(mode="json"), "metrics": metrics}
    save_model(model, cfg.model, saved, extra=extra)
    return Planted(model, cfg.model, task, saved, metrics)


def plant_honest(run: RunContext, task: Task) -> Planted:
    """The same training on the task's honest variant (the behaviour never planted), saved as models/honest."""
    require(task, "honest", "the honest yardstick of revival")
    return plant(run, task.honest(), name="honest", stage="plant_honest")


def lane_model(run: RunContext, task: Task, weights: Path | None) -> torch.nn.Module:
    """A model object of one step's own, loaded with `weights` (None: as initialised): what a step that may run
    beside others (whitebox.runtime.lanes) trains or hooks."""
    with seeded(run.cfg.run.seed):  # under the RNG lock: another lane's seeded build does not interleave
        model = build_model(run.cfg.model, None if task.uses_model_tokenizer else task.vocabulary(), run.device)
    return model if weights is None else load_weights(model, run.cfg.model, weights)
