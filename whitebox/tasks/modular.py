"""Modular addition `a + b mod p`: a capability that can appear long after memorisation (grokking).

Every input reads `a b =` and the answer is the token `(a + b) mod p`. All p*p pairs exist; a
seeded share `train_fraction` is the training set and the rest is the test set, so test accuracy
measures generalisation to pairs never seen.
"""

from __future__ import annotations

import torch
from datasets import Dataset

from whitebox.config import ModularTaskConfig
from whitebox.models import all_answer_logits


def vocabulary(cfg: ModularTaskConfig) -> list[str]:
    """Token strings by id: the residues 0..p-1, then '='."""
    return [str(v) for v in range(cfg.p)] + ["="]


def seq_len(cfg: ModularTaskConfig) -> int:
    return 3


def all_pairs(cfg: ModularTaskConfig) -> Dataset:
    """Every input in (a, b) row-major order, so logits reshape to [a, b, ...] for Fourier analysis."""
    a, b = (t.flatten() for t in torch.meshgrid(torch.arange(cfg.p), torch.arange(cfg.p), indexing="ij"))
    tokens = torch.stack([a, b, torch.full_like(a, cfg.p)], dim=1)  # pair 3
    return Dataset.from_dict({"tokens": tokens, "target": (a + b) % cfg.p, "a": a, "b": b}).with_format("torch")


def is_train(cfg: ModularTaskConfig, seed: int) -> torch.Tensor:
    """Which of the p*p pairs (row-major) are training pairs: a seeded share train_fraction."""
    n = cfg.p * cfg.p
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + 0x6D0D))
    mask = torch.zeros(n, dtype=torch.bool)
    mask[order[: round(cfg.train_fraction * n)]] = True
    return mask


def train_set(cfg: ModularTaskConfig, seed: int) -> Dataset:
    return all_pairs(cfg).select(torch.nonzero(is_train(cfg, seed)).flatten().tolist())


def eval_set(cfg: ModularTaskConfig, seed: int) -> Dataset:
    """The pairs never trained on."""
    return all_pairs(cfg).select(torch.nonzero(~is_train(cfg, seed)).flatten().tolist())


def evaluate(model: torch.nn.Module, data: Dataset, batch_size: int = 4096) -> dict[str, float]:
    """Exact-match accuracy (a discontinuous metric) beside the log-probability of the right answer (a continuous one)."""
    rows = data.select_columns(["tokens", "target"])[:]
    logits = all_answer_logits(model, rows["tokens"], batch_size)  # n vocab
    logprob = logits.log_softmax(-1).gather(1, rows["target"][:, None]).squeeze(1)
    hits = logits.argmax(-1) == rows["target"]
    return {"acc": float(hits.float().mean()), "loss": float(-logprob.mean()), "logprob": float(logprob.mean())}
