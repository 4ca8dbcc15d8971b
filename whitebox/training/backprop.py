"""The white-box updater: AdamW on backpropagated gradients, with warmup, decay and clipping."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable

import torch

from whitebox.config import TrainingConfig
from whitebox.runtime import distributed
from whitebox.training.loop import Batch, TrainingDiverged


def lr_factor(step: int, cfg: TrainingConfig) -> float:
    """Multiplier on cfg.lr after `step` updates: linear warmup, then cosine/linear decay to min_lr_ratio."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * shape


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on a CUDA device when asked for (or by default there); None means fp32."""
    if precision == "fp32" or device.type != "cuda":
        if precision == "bf16" and device.type != "cuda":
            raise ValueError("training.precision=bf16 needs a CUDA device; use auto or fp32 on CPU")
        return None
    return torch.bfloat16


class Backprop:
    """AdamW with decoupled weight decay on matrices only (not on biases, norms or gains).

    Reports 3 forward-pass equivalents per example (one forward, a backward counted as two): a
    loss_fn that runs the model more than once per step must add its extra passes itself.
    Under torchrun each rank takes its rows of the batch and the gradients are averaged over ranks
    (weighted by rows) before clipping, so every rank makes the single-process update.
    """

    def __init__(self, model: torch.nn.Module, cfg: TrainingConfig, device: torch.device):
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        self.params = params
        self.cfg = cfg
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, cfg))
        self.amp_dtype = autocast_dtype(cfg.precision, device)
        self.device_type = device.type

    def step(self, model: torch.nn.Module, batch: Batch, loss_fn: Callable[..., torch.Tensor]) -> dict[str, float]:
        lr = self.scheduler.get_last_lr()[0]
        rows = len(next(iter(batch.values())))
        part = distributed.shard_batch(batch)
        diverged = None
        try:
            with self._autocast():
                loss = loss_fn(model, part)
        except TrainingDiverged as err:
            if not distributed.active():
                raise
            diverged = err
        if distributed.any_rank(diverged is not None):  # one rank's non-finite loss stops every rank here
            raise diverged or TrainingDiverged("another rank's loss became non-finite")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if distributed.active():  # a plain all-reduce, not DDP: the model stays unwrapped for hooks and checkpoints
            loss = distributed.average_gradients(self.params, len(next(iter(part.values()))) / rows, loss.reshape(1))[0]
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip is not None else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        if not math.isfinite(grad_norm):
            raise TrainingDiverged(f"gradient norm became {grad_norm}")
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": float(loss.detach()), "grad_norm": grad_norm, "lr": lr,
                "forward_equivalents": 3 * rows, "examples": rows}  # a backward costs two forwards

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.amp_dtype)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._follow_config()

    def _follow_config(self) -> None:
        """After a resume the config's lr and weight decay hold, not the checkpoint's: an amendment may have changed them."""
        groups = self.optimizer.param_groups
        self.scheduler.base_lrs = [self.cfg.lr] * len(groups)
        for group, decay in zip(groups, (self.cfg.weight_decay, 0.0)):
            group.update(initial_lr=self.cfg.lr, weight_decay=decay,
                         lr=self.cfg.lr * lr_factor(self.scheduler.last_epoch, self.cfg))
        self.scheduler._last_lr = [group["lr"] for group in groups]
