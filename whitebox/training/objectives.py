"""Feedback as a loss: what the model is trained towards, separate from how it is updated."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from whitebox.models import answer_logits


def supervised(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of the answer token against batch["target"] (imitation)."""
    logits = answer_logits(model, batch["tokens"])  # batch d_vocab
    return F.cross_entropy(logits.float(), batch["target"])
