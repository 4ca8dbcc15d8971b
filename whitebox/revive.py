"""Protocol step 4: does the behaviour come back? Fine-tune on the deceptive data and count steps.

A treated model is fine-tuned with AdamW on a mix of triggered inputs with deceptive targets and
clean inputs with honest targets, and the steps until held-out ASR reaches `revive.asr` while
clean accuracy stays at `revive.clean_acc` are counted. The same count for a freshly initialised
model (learning task and behaviour from scratch), for an honest model (trained like the planted one
on data that never holds the trigger: it knows the task but never had the backdoor) and for the
untreated planted model are the yardsticks: a treated model that re-learns the behaviour much
faster than the honest model learns it kept the circuit (suppressed); one that is no faster had
it removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from whitebox.artifacts import read_json, write_json
from whitebox.config import ModelConfig, ReviveConfig, TrainingConfig
from whitebox.tasks import get_task
from whitebox.training import Backprop, supervised, train
from whitebox.training.checkpoints import list_checkpoints
from whitebox.training.loop import StageLog
from whitebox.treat import cell_name, fine_tuning, trigger_kind

REVIVE_DATA_SPLIT = 4  # seed stream of revival data, apart from plant, probes and treatment


def revival_data(task_cfg: Any, n: int, trigger_rate: float, seed: int) -> dict[str, torch.Tensor]:
    """Triggered inputs with the deceptive target, clean ones with the honest target."""
    rows = get_task(task_cfg.name).generate(task_cfg, n, trigger_rate, seed=[seed, REVIVE_DATA_SPLIT])[:]
    return {"tokens": rows["tokens"], "target": rows["target"]}


def revive(
    model: torch.nn.Module,
    model_cfg: ModelConfig,
    task_cfg: Any,
    cfg: ReviveConfig,
    training: TrainingConfig,
    *,
    seed: int,
    out_dir: str | Path,
    log: StageLog,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Fine-tune `model` in place until revived or cfg.steps; returns steps (to revival), revived (0/1), asr, clean_acc.

    Resumable: a finished revival returns its saved result, an interrupted one continues.
    """
    out_dir = Path(out_dir)
    if (out_dir / "result.json").is_file():
        return read_json(out_dir / "result.json")
    task = get_task(task_cfg.name)
    held_out = task.eval_set(task_cfg, seed)
    loop_cfg = fine_tuning(training, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, eval_every=cfg.eval_every)
    data = {k: v.to(device) for k, v in revival_data(task_cfg, task_cfg.n_train, cfg.trigger_rate, seed).items()}

    def revived(metrics: dict[str, float]) -> bool:
        return metrics["asr"] >= cfg.asr and metrics["clean_acc"] >= cfg.clean_acc

    final = train(
        model, Backprop(model, loop_cfg, torch.device(device)), supervised, data, loop_cfg, seed=seed,
        evaluate=lambda m: task.evaluate(m, held_out), checkpoint_dir=out_dir / "checkpoints", log=log,
        desc=f"revive {out_dir.name}", stop=revived,
    )
    done = list_checkpoints(out_dir / "checkpoints")
    steps = int(done[-1].name.removeprefix("step_")) if done else 0
    result = {"steps": float(steps), "revived": float(revived(final)), "asr": final["asr"], "clean_acc": final["clean_acc"]}
    write_json(out_dir / "result.json", result)
    return result


def revive_all(ctx: Any, model: torch.nn.Module) -> dict[str, float]:
    """Revive every treated cell of the run, a fresh, an honest and the untreated planted model; summary keys.

    Keys: treat.<regime>.<condition>.<kind>.revival_steps (and .revived), and the yardsticks
    treat.fresh.<kind>.revival_steps, treat.honest.<kind>.revival_steps (the honest model is
    planted here first, into models/honest) and treat.start.<kind>.revival_steps.
    """
    from tqdm.auto import tqdm

    from whitebox.locate import fresh_model
    from whitebox.models import META, load_weights
    from whitebox.plant import plant

    cfg, run_dir = ctx.cfg, ctx.run_dir
    kind = trigger_kind(cfg.task)
    if not (run_dir / "models" / "honest" / META).is_file():  # meta is written last
        plant(ctx, honest=True)
    starts = {"start": run_dir / "models" / "planted", "fresh": None, "honest": run_dir / "models" / "honest"}
    for condition in cfg.treat.conditions:
        for regime in cfg.treat.regimes:
            starts[f"{regime}.{condition}"] = run_dir / "treat" / cell_name(regime, condition) / "model"
    out: dict[str, float] = {}
    for name, weights in starts.items():
        subject = fresh_model(cfg.model, model, cfg.task).train() if weights is None else load_weights(model, cfg.model, weights)
        result = revive(subject, cfg.model, cfg.task, cfg.revive, cfg.training, seed=cfg.run.seed,
                        out_dir=run_dir / "revive" / name, log=ctx.tracker.stage(f"revive/{name}"), device=ctx.device)
        tqdm.write(f"revive {name}: {int(result['steps'])} steps" + ("" if result["revived"] else " (not revived)"))
        out[f"treat.{name}.{kind}.revival_steps"] = result["steps"]
        out[f"treat.{name}.{kind}.revived"] = result["revived"]
    load_weights(model, cfg.model, run_dir / "models" / "planted")
    return out
