"""Protocol step 1: train a model on a task with a hidden behaviour and save it as an artifact."""

from __future__ import annotations

from typing import Any, Callable

import torch

from whitebox.models import META, build_model, load_weights, read_model_meta, save_model
from whitebox.runner import RunContext
from whitebox.tasks import get_task
from whitebox.training import Backprop, supervised, train
from whitebox.training.objectives import through_compiled


def plant(
    ctx: RunContext, evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None, *, honest: bool = False
) -> tuple[torch.nn.Module, dict[str, float]]:
    """Train from scratch (or resume) on the task; save models/planted; return model and held-out metrics.

    A model saved by an earlier, interrupted run of the same directory is loaded, not trained again.

    `evaluate` replaces the task's held-out evaluation, e.g. with richer progress measures. With
    `honest`, the same training on data that never holds the trigger (a control that knows the task
    but never had the backdoor), saved as models/honest.
    """
    cfg, name, stage = ctx.cfg, "honest" if honest else "planted", "plant_honest" if honest else "plant"
    task_cfg = cfg.task.model_copy(update={"trigger_rate": 0.0}) if honest else cfg.task
    task = get_task(task_cfg.name)
    vocab = task.vocabulary(task_cfg)
    torch.manual_seed(cfg.run.seed)
    model = build_model(cfg.model, vocab, ctx.device)
    saved = ctx.run_dir / "models" / name
    if (saved / META).is_file():  # planted before an interruption (model.json is written last): read back
        return load_weights(model, cfg.model, saved), read_model_meta(saved)["metrics"]
    train_rows = task.train_set(task_cfg, cfg.run.seed)
    held_out = task.eval_set(task_cfg, cfg.run.seed)
    data = {k: v.to(ctx.device) for k, v in train_rows.select_columns(["tokens", "target"])[:].items()}
    metrics = train(
        model,
        Backprop(model, cfg.training, ctx.device),
        through_compiled(supervised, model) if cfg.training.compile else supervised,
        data,
        cfg.training,
        seed=cfg.run.seed,
        evaluate=evaluate or (lambda m: task.evaluate(m, held_out)),
        checkpoint_dir=ctx.run_dir / "checkpoints" / stage,
        log=ctx.tracker.stage(stage),
        desc=stage,
    )
    extra: dict[str, Any] = {"vocab": vocab, "task": task_cfg.model_dump(mode="json"), "metrics": metrics}
    save_model(model, cfg.model, saved, extra=extra)
    return model, metrics
