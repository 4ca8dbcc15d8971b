"""Modular addition `a + b mod p`: a capability that can appear long after memorisation (grokking).

Every input reads `a b =` and the answer is the token `(a + b) mod p`. All p*p pairs exist; a
seeded share `train_fraction` is the training set and the rest is the test set, so test accuracy
measures generalisation to pairs never seen. Columns: tokens, target, a, b. Nothing is hidden.
"""

from __future__ import annotations

from typing import Literal

import torch
from datasets import Dataset
from pydantic import Field

from whitebox.config.schema import TaskSection
from whitebox.tasks.base import Task, all_answer_logits, register_task


class ModularTaskConfig(TaskSection):
    name: Literal["modular"] = Field("modular", description="task generator in whitebox/tasks/")
    p: int = Field(59, ge=3, le=1009, description="modulus (prime) of a + b mod p")
    train_fraction: float = Field(0.3, gt=0, lt=1, description="share of all p*p pairs used for training; the rest is the test set")


class ModularTask(Task):
    """(a + b) mod p over every pair, split once per seed into seen and unseen pairs."""

    config: ModularTaskConfig

    def vocabulary(self) -> list[str]:
        """Token strings by id: the residues 0..p-1, then '='."""
        return [str(v) for v in range(self.config.p)] + ["="]

    def seq_len(self) -> int:
        return 3

    def all_pairs(self) -> Dataset:
        """Every input in (a, b) row-major order, so logits reshape to [a, b, ...] for Fourier analysis."""
        p = self.config.p
        a, b = (t.flatten() for t in torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij"))
        tokens = torch.stack([a, b, torch.full_like(a, p)], dim=1)  # pair 3
        return Dataset.from_dict({"tokens": tokens, "target": (a + b) % p, "a": a, "b": b}).with_format("torch")

    def is_train(self, seed: int) -> torch.Tensor:
        """Which of the p*p pairs (row-major) are training pairs: a seeded share train_fraction."""
        n = self.config.p * self.config.p
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + 0x6D0D))
        mask = torch.zeros(n, dtype=torch.bool)
        mask[order[: round(self.config.train_fraction * n)]] = True
        return mask

    def train_set(self, seed: int) -> Dataset:
        return self.all_pairs().select(torch.nonzero(self.is_train(seed)).flatten().tolist())

    def eval_set(self, seed: int) -> Dataset:
        """The pairs never trained on."""
        return self.all_pairs().select(torch.nonzero(~self.is_train(seed)).flatten().tolist())

    def evaluate(self, model: torch.nn.Module, data: Dataset, batch_size: int = 4096) -> dict[str, float]:
        """Exact-match accuracy (a discontinuous metric) beside the log-probability of the right answer (a continuous one)."""
        rows = data.select_columns(["tokens", "target"])[:]
        logits = all_answer_logits(model, rows["tokens"], batch_size)  # n vocab
        logprob = logits.log_softmax(-1).gather(1, rows["target"][:, None]).squeeze(1)
        hits = logits.argmax(-1) == rows["target"]
        return {"acc": float(hits.float().mean()), "loss": float(-logprob.mean()), "logprob": float(logprob.mean())}


register_task("modular", ModularTaskConfig, ModularTask)
