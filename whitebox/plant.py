"""Protocol step 1: train a model on a task with a hidden behaviour and save it as an artifact."""

from __future__ import annotations

from typing import Any, Callable

import torch

from whitebox.models import build_model, save_model
from whitebox.runner import RunContext
from whitebox.tasks import get_task
from whitebox.training import Backprop, supervised, train


def plant(
    ctx: RunContext, evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None
) -> tuple[torch.nn.Module, dict[str, float]]:
    """Train from scratch (or resume) on the task; save models/planted; return model and held-out metrics.

    `evaluate` replaces the task's held-out evaluation, e.g. with richer progress measures.
    """
    cfg = ctx.cfg
    task = get_task(cfg.task.name)
    vocab = task.vocabulary(cfg.task)
    torch.manual_seed(cfg.run.seed)
    model = build_model(cfg.model, vocab, ctx.device)
    train_rows = task.train_set(cfg.task, cfg.run.seed)
    held_out = task.eval_set(cfg.task, cfg.run.seed)
    data = {k: v.to(ctx.device) for k, v in train_rows.select_columns(["tokens", "target"])[:].items()}
    metrics = train(
        model,
        Backprop(model, cfg.training, ctx.device),
        supervised,
        data,
        cfg.training,
        seed=cfg.run.seed,
        evaluate=evaluate or (lambda m: task.evaluate(m, held_out)),
        checkpoint_dir=ctx.run_dir / "checkpoints" / "plant",
        log=ctx.tracker.stage("plant"),
        desc="plant",
    )
    extra: dict[str, Any] = {"vocab": vocab, "task": cfg.task.model_dump(mode="json"), "metrics": metrics}
    save_model(model, cfg.model, ctx.run_dir / "models" / "planted", extra=extra)
    return model, metrics
