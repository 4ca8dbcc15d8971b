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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from whitebox.config import ReviveConfig, TrainingConfig
from whitebox.models import META, load_weights
from whitebox.protocol.locate import fresh_model
from whitebox.protocol.plant import Planted, plant_honest
from whitebox.protocol.treat import Treated, fine_tuning
from whitebox.runtime.artifacts import write_json
from whitebox.runtime.records import read_numbers
from whitebox.runtime.context import RunContext
from whitebox.runtime.rundir import StageDir, seed_stream, treat_key
from whitebox.tasks import Task, require
from whitebox.training import Backprop, supervised, train
from whitebox.training.checkpoints import list_checkpoints
from whitebox.training.loop import StageLog


def revival_data(task: Task, n: int, trigger_rate: float, seed: int) -> dict[str, torch.Tensor]:
    """Triggered inputs with the deceptive target, clean ones with the honest target."""
    require(task, "sample", "revival data")
    rows = task.sample(n, trigger_rate, seed=seed_stream("revival", seed))[:]
    return {"tokens": rows["tokens"], "target": rows["target"]}


def revive(
    model: torch.nn.Module,
    task: Task,
    cfg: ReviveConfig,
    training: TrainingConfig,
    *,
    seed: int,
    out: StageDir,
    log: StageLog,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Fine-tune `model` in place until revived or cfg.steps; returns steps (to revival), revived (0/1), asr, clean_acc.

    Resumable: a finished revival returns its saved result, an interrupted one continues.
    """
    if out.result.is_file():
        return read_numbers(out.result, ("steps", "revived", "asr", "clean_acc"))
    held_out = task.eval_set(seed)
    loop_cfg = fine_tuning(training, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, eval_every=cfg.eval_every)
    n = len(task.train_set(seed))  # as many examples as the model was planted with
    data = {k: v.to(device) for k, v in revival_data(task, n, cfg.trigger_rate, seed).items()}

    def revived(metrics: dict[str, float]) -> bool:
        return metrics["asr"] >= cfg.asr and metrics["clean_acc"] >= cfg.clean_acc

    final = train(
        model, Backprop(model, loop_cfg, torch.device(device)), supervised, data, loop_cfg, seed=seed,
        evaluate=lambda m: task.evaluate(m, held_out), checkpoint_dir=out.checkpoints, log=log,
        desc=f"revive {out.path.name}", stop=revived, lr_key="revive.lr",
    )
    done = list_checkpoints(out.checkpoints)
    steps = int(done[-1].name.removeprefix("step_")) if done else 0
    result = {"steps": float(steps), "revived": float(revived(final)), "asr": final["asr"], "clean_acc": final["clean_acc"]}
    write_json(out.result, result)
    return result


@dataclass
class Revived:
    """Steps to revival per model: the treated rows (sft.present, ...) and the yardsticks start, fresh, honest."""

    results: dict[str, dict[str, float]]
    summary: dict[str, Any] = field(default_factory=dict)


def revive_all(run: RunContext, planted: Planted, treated: Treated) -> Revived:
    """Revive every treated model, a fresh, an honest and the untreated planted model.

    Summary keys: treat.<row>.<variant>.revival_steps (and .revived) for every treated row and the
    yardsticks treat.fresh.*, treat.honest.* (the honest model is planted here first, into
    models/honest) and treat.start.*.
    """
    cfg, model, task = run.cfg, planted.model, planted.task
    kind = task.variant
    honest = run.dir.model("honest")
    if not (honest / META).is_file():  # meta is written last
        plant_honest(run, task)
    starts: dict[str, Path | None] = {"start": planted.path, "fresh": None, "honest": honest, **treated.models}
    results, out = {}, {}
    for name, weights in starts.items():
        subject = fresh_model(cfg.model, model, task).train() if weights is None else load_weights(model, cfg.model, weights)
        result = revive(subject, task, cfg.revive, cfg.training, seed=cfg.run.seed, out=run.dir.revival(name),
                        log=run.tracker.stage(f"revive/{name}"), device=run.device)
        tqdm.write(f"revive {name}: {int(result['steps'])} steps" + ("" if result["revived"] else " (not revived)"))
        results[name] = result
        out[treat_key(name, kind, "revival_steps")] = result["steps"]
        out[treat_key(name, kind, "revived")] = result["revived"]
    load_weights(model, cfg.model, planted.path)
    return Revived(results, out)

