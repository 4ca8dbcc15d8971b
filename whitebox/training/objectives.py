"""Feedback as a loss: what the model is trained towards, separate from how it is updated."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from whitebox.tasks.base import answer_logits


def through_compiled(loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor], model: torch.nn.Module) -> Callable:
    """`loss_fn` run through torch.compile(model): the same parameters, a compiled forward (checkpoints, hooks and
    evaluation keep using the plain module)."""
    fast = torch.compile(model)
    return lambda _model, batch: loss_fn(fast, batch)


def supervised(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of the answer token against batch["target"] (imitation)."""
    logits = answer_logits(model, batch["tokens"])  # batch d_vocab
    return F.cross_entropy(logits.float(), batch["target"])
