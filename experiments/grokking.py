"""Grokking: train modular addition long past memorisation and watch the generalising circuit form."""

from __future__ import annotations

from typing import Any

from whitebox.config import ConfigError
from whitebox.fourier import progress_measures
from whitebox.plant import plant
from whitebox.report import first_step_above, plot_grokking
from whitebox.runner import RunContext
from whitebox.tasks.modular import is_train


def run(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.cfg
    if cfg.task.name != "modular":
        raise ConfigError(f"task.name: the grokking experiment needs 'modular', got {cfg.task.name!r}")
    train_mask = is_train(cfg.task, cfg.run.seed)
    _, final = plant(ctx, evaluate=lambda m: progress_measures(m, cfg.task.p, train_mask))
    plot_grokking(ctx.tracker.metrics_path, "plant", ctx.run_dir / "plots" / "grokking.png")
    crossings = {
        f"grok.step_{name}_acc_0.9": first_step_above(ctx.tracker.metrics_path, "plant", f"eval/{name}_acc", 0.9)
        for name in ("train", "test")
    }
    return {**{f"grok.{k}": v for k, v in final.items()}, **crossings}
