"""Feedback: what a regime learns from, as a loss (backprop, zo) or a per-example fitness (es).

`Supervised` compares the answer logits with batch["target"]. `Reward` lets the model answer on its
own (greedy, or sampled with a temperature) and feeds back only a rater's scalar per example, so a
flawed rater can later stand in for an honest one.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from whitebox.tasks.base import Batch, Rater, answer_logits
from whitebox.training.noise import gumbel


class Feedback(Protocol):
    """Scores answer logits per example (higher is better); calling it on a model gives a loss value."""

    def fitness(self, logits: torch.Tensor, batch: Batch, gen: torch.Generator | None = None) -> torch.Tensor: ...

    def __call__(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor: ...


class Supervised:
    """Cross-entropy of the answer against batch["target"]; the fitness is its negative per example."""

    def __call__(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(answer_logits(model, batch["tokens"]).float(), batch["target"])

    def fitness(self, logits: torch.Tensor, batch: Batch, gen: torch.Generator | None = None) -> torch.Tensor:
        logp = logits.float().log_softmax(-1)  # ... batch vocab
        target = batch["target"].expand(logp.shape[:-1]).unsqueeze(-1)
        return logp.gather(-1, target).squeeze(-1)


class Reward:
    """The model's own answer scored by `rater`: greedy when temperature is 0, else sampled from softmax(logits / T)."""

    def __init__(self, rater: Rater, temperature: float = 0.0):
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
        self.rater = rater
        self.temperature = temperature

    def sample(
        self, logits: torch.Tensor, gen: torch.Generator | None = None, n: int | None = None,
        within: tuple[slice, int] | None = None,
    ) -> torch.Tensor:
        """Answers [..., batch] (or [n, ..., batch]); the same noise for every leading index (common random numbers).

        `within` = (rows, total): the logits are these rows of a batch of `total`, sampled with that batch's noise.
        """
        if self.temperature == 0:
            answers = logits.argmax(-1)
            return answers.expand(n, *answers.shape) if n else answers
        rows, total = within or (slice(None), logits.shape[-2])
        noise = gumbel(((n,) if n else ()) + (1,) * (logits.ndim - 2) + (total, logits.shape[-1]), gen, logits.device)
        return (logits.float() / self.temperature + noise[..., rows, :]).argmax(-1)

    def fitness(self, logits: torch.Tensor, batch: Batch, gen: torch.Generator | None = None) -> torch.Tensor:
        return self.rater(batch, self.sample(logits, gen)).float()

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Minus the mean reward: a loss value for zeroth-order updaters (it has no gradient)."""
        return -self.fitness(answer_logits(model, batch["tokens"]), batch).mean()
