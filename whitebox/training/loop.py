"""The one training loop: batches, evaluation, checkpoints, resume and the NaN guard.

What is optimised (`loss_fn`) and how (`updater`: AdamW, REINFORCE, evolution strategies, SPSA) are
plugged in; the loop never looks inside either. Updaters report their cost per step in their stats
(COST_KEYS); the loop adds it up, logs it under budget/ and can stop at a forward-pass budget.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import torch
from tqdm.auto import tqdm

from whitebox.config import TrainingConfig
from whitebox.runtime.artifacts import ArtifactError
from whitebox.runtime.distributed import any_rank, is_main
from whitebox.runtime.lanes import STOP, current_lane
from whitebox.training.checkpoints import list_checkpoints, resume_point, save_checkpoint

Batch = dict[str, torch.Tensor]
BAR_METRICS = 4  # held-out metrics shown on the progress bar (the first ones an evaluation returns)
LossFn = Callable[[torch.nn.Module, Batch], torch.Tensor]
# forward-pass equivalents (one example through one forward; a backward counts two) and examples seen
COST_KEYS = ("forward_equivalents", "examples")


class TrainingDiverged(RuntimeError):
    """The loss, the gradients or the parameters stopped being finite.

    `lr_key` is the config key of the learning rate that was in use, so the message can name the
    amendment that continues from the last good checkpoint with a smaller one.
    """

    def __init__(self, message: str, lr_key: str | None = None, lr: float | None = None):
        super().__init__(message)
        self.lr_key, self.lr = lr_key, lr


class Updater(Protocol):
    """One parameter update from a batch; optimizer state round-trips through state_dict.

    step's stats include "loss" and, for budgeted training, the step's cost under COST_KEYS.
    """

    def step(self, model: torch.nn.Module, batch: Batch, loss_fn: LossFn) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class StageLog(Protocol):
    """Where the loop's metrics go: log a step, or forget steps after a resume point."""

    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def rewind(self, step: int) -> None: ...

    def close(self, through: int | None = None) -> None:
        """The records up to step `through` (all of them when None: the stage is done) are final."""


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """Rows of the batch for `step`: a seeded permutation per epoch, so any step is reproducible alone."""
    per_epoch = max(1, n // batch_size)
    epoch, k = divmod(step, per_epoch)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)[k * batch_size : (k + 1) * batch_size]


def train(
    model: torch.nn.Module,
    updater: Updater,
    loss_fn: LossFn,
    data: Batch,
    cfg: TrainingConfig,
    *,
    seed: int,
    evaluate: Callable[[torch.nn.Module], dict[str, float]],
    checkpoint_dir: str | Path,
    log: StageLog,
    desc: str = "train",
    budget: int | None = None,
    eval_every_budget: int | None = None,
    stop: Callable[[dict[str, float], int], bool] | None = None,
    lr_key: str = "training.lr",
) -> dict[str, float]:
    """Train for cfg.steps updates, or until `budget` forward-pass equivalents are spent when one is given
    (the last step may overshoot it by less than one step's cost); resume from the newest checkpoint;
    return the final evaluation.

    With `eval_every_budget`, evaluation and checkpoints come each time that many forward-pass
    equivalents have been spent (instead of every cfg.eval_every steps), so regimes of different
    step costs are measured at the same points of their budget. `stop(metrics, step)` ends training early
    after an evaluation that satisfies it (checkpointed, so a resumed run ends there too). `lr_key` is
    the config key cfg.lr came from, named when training diverges. When training is done the stage's
    records are closed: a resume then checks that they are all still in metrics.jsonl.
    """
    n = len(next(iter(data.values())))
    resumed = resume_point(checkpoint_dir, model, updater)
    done = resumed is not None
    step = resumed[0] if done else 0
    spent = dict.fromkeys(COST_KEYS, 0) | (resumed[1] if done else {})
    if done and budget is None and step > cfg.steps:
        raise ArtifactError(f"{list_checkpoints(checkpoint_dir)[-1]}: step {step} is past this stage's {cfg.steps} steps; "
                            "it is not this run's checkpoint: delete it and resume")

    stopped = False

    def finished() -> bool:
        return stopped or (spent["forward_equivalents"] >= budget if budget is not None else step >= cfg.steps)

    log.rewind(step if done else -1)  # lines up to a checkpoint were written before it
    last_eval: dict[str, float] | None = None
    if step == 0:
        last_eval = _evaluate(model, evaluate, log, 0, spent)
    if stop is not None:  # the start, or the checkpoint resumed from, may already meet it
        last_eval = last_eval if last_eval is not None else evaluate(model)
        stopped = stop(last_eval, step)
    guarded_loss = _finite(loss_fn)
    postfix: dict[str, str] = {}
    total, initial = (budget, spent["forward_equivalents"]) if budget is not None else (cfg.steps, step)
    bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, mininterval=1.0, unit_scale=budget is not None,
               disable=not is_main(), position=current_lane(), leave=current_lane() == 0)  # under torchrun rank 0 shows progress
    with bar, _interrupt_at_step_boundary() as interrupted:
        while not finished():
            idx = batch_indices(step, n, cfg.batch_size, seed)
            batch = {k: v[idx] for k, v in data.items()}
            if not model.training:  # evaluation left it in eval mode; train() walks every submodule of a bridge
                model.train()
            try:
                stats = updater.step(model, batch, guarded_loss)
                _check_parameters(model)
            except TrainingDiverged as err:
                kept = list_checkpoints(checkpoint_dir)
                where = f"the last good checkpoint is {kept[-1]}" if kept else "no checkpoint was written yet"
                raise TrainingDiverged(f"{desc} step {step + 1}: {err}; training stopped and {where}. Lower {lr_key}, "
                                      "raise training.warmup_steps or set training.grad_clip", lr_key, cfg.lr) from None
            step += 1
            if budget is not None and "forward_equivalents" not in stats:
                raise ValueError(f"{type(updater).__name__} does not report forward_equivalents; it cannot run on a budget")
            before = spent["forward_equivalents"]
            for key in COST_KEYS:
                spent[key] += int(stats.get(key, 0))
            last = finished()
            if eval_every_budget is None:
                due = step % cfg.eval_every == 0
            else:
                due = spent["forward_equivalents"] // eval_every_budget > before // eval_every_budget
            if step % cfg.log_every == 0 or last:
                log.log(step, {f"train/{k}": v for k, v in stats.items()} | {f"budget/{k}": v for k, v in spent.items()})
                postfix["train_loss"] = f"{stats['loss']:.3g}"
            if due or last:
                last_eval = _evaluate(model, evaluate, log, step, spent)
                stopped = stop is not None and stop(last_eval, step)
                shown = list(last_eval.items())[:BAR_METRICS]
                postfix.update({("eval_loss" if k == "loss" else k): f"{v:.3f}" for k, v in shown})
            bar.set_postfix(postfix, refresh=False)
            halt = any_rank(interrupted())  # under torchrun a Ctrl-C seen by one rank stops them all at this step
            if step % cfg.checkpoint_every == 0 or (due and eval_every_budget is not None) or last or stopped or halt:
                save_checkpoint(checkpoint_dir, step, model, updater, keep=cfg.keep_checkpoints, spent=spent)
                log.close(step)  # the records the checkpoint resumes after: a resume checks they are all there
            if halt:
                raise KeyboardInterrupt(f"{desc} interrupted; checkpoint saved at step {step}")
            bar.update(int(stats.get("forward_equivalents", 0)) if budget is not None else 1)
    log.close()
    return last_eval if last_eval is not None else _evaluate(model, evaluate, None, step)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; a scheduler's preemption or torchrun's shutdown
REPEAT_SECONDS = 1.0


@contextlib.contextmanager
def _interrupt_at_step_boundary() -> Iterator[Callable[[], bool]]:
    """Defer the first Ctrl-C or SIGTERM to the end of the current step (a second one stops at once, unless it
    is the same request arriving twice: a job's signal and its --workers parent's copy, within REPEAT_SECONDS).
    A loop in another lane (whitebox.runtime.lanes) stops at its step boundary once the main thread has seen one."""
    if threading.current_thread() is not threading.main_thread():
        yield STOP.is_set
        return
    hits: list[float] = []

    def handler(signum: int, frame: Any) -> None:
        if hits and time.monotonic() - hits[0] > REPEAT_SECONDS:
            raise KeyboardInterrupt
        if hits:
            return
        hits.append(time.monotonic())
        STOP.set()
        tqdm.write(f"{signal.Signals(signum).name}: finishing this step and saving a checkpoint (send it again to stop now)")

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield lambda: bool(hits)  # STOP is for the other lanes: a stale one from an earlier run must not stop this loop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _evaluate(
    model: torch.nn.Module, evaluate: Callable, log: StageLog | None, step: int, spent: dict[str, int] | None = None
) -> dict[str, float]:
    """Held-out metrics, logged as eval/* beside the budget spent so far (curves plot against either)."""
    metrics = evaluate(model)
    if log is not None:
        log.log(step, {f"eval/{k}": v for k, v in metrics.items()} | {f"budget/{k}": v for k, v in (spent or {}).items()})
    return metrics


def _check_parameters(model: torch.nn.Module) -> None:
    """Stop when an update left a weight non-finite, before an evaluation or a checkpoint can see it.

    The loss guard alone would notice only at the next step's loss, after a checkpoint may have saved it.
    """
    params = [p for p in model.parameters()]
    if bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
        return
    bad = next(name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all()))
    raise TrainingDiverged(f"parameter {bad} became non-finite after the update")


def _finite(loss_fn: LossFn) -> LossFn:
    """Wrap a loss so a NaN/inf value stops training before any update uses it."""

    def guarded(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        loss = loss_fn(model, batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingDiverged(f"loss became {value}")
        return loss

    return guarded
