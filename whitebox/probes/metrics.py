"""Probe and detector metrics, batched over leading dimensions: AUROC, accuracy, recall at a fixed FPR.

Every function takes scores `[..., n]` (higher means "positive") and binary labels `[n]`, and
returns one value per leading index, so the metrics of all hooks come from one call.
"""

from __future__ import annotations

import math

import torch


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve (ties count one half), the Mann-Whitney statistic: [...]."""
    y = _binary(labels, scores.shape[-1]).to(scores.device)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return torch.full(scores.shape[:-1], math.nan, dtype=torch.float64)
    s = scores.detach().double().contiguous()
    if not bool(torch.isfinite(s).all()):
        raise ValueError("scores contain NaN or infinity; the probe or detector is degenerate")
    ordered = s.sort(dim=-1).values
    lo = torch.searchsorted(ordered, s, right=False)
    hi = torch.searchsorted(ordered, s, right=True)
    ranks = (lo + hi + 1).double() / 2  # 1-based mid-ranks, ties averaged
    rank_sum = (ranks * y.double()).sum(-1)
    return ((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).cpu()


def accuracy(scores: torch.Tensor, labels: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Share of examples on the right side of `threshold` (score > threshold means positive): [...]."""
    y = _binary(labels, scores.shape[-1]).to(scores.device)
    return ((scores.detach() > threshold) == y).double().mean(-1).cpu()


def recall_at_fpr(scores: torch.Tensor, labels: torch.Tensor, fpr: float = 0.01) -> torch.Tensor:
    """Best true-positive rate among thresholds whose false-positive rate is at most `fpr`: [...].

    With m = floor(fpr * n_neg), the threshold is the (m+1)-th highest negative score and only
    scores strictly above it count as positive, so at most m negatives are flagged.
    """
    y = _binary(labels, scores.shape[-1]).to(scores.device)
    s = scores.detach().double()
    neg, pos = s[..., ~y], s[..., y]
    if neg.shape[-1] == 0 or pos.shape[-1] == 0:
        return torch.full(scores.shape[:-1], math.nan, dtype=torch.float64)
    allowed = math.floor(fpr * neg.shape[-1] + 1e-9)
    if allowed >= neg.shape[-1]:
        return torch.ones(scores.shape[:-1], dtype=torch.float64)
    cut = neg.sort(dim=-1, descending=True).values[..., allowed : allowed + 1]  # ... 1
    return (pos > cut).double().mean(-1).cpu()


def summary(scores: torch.Tensor, labels: torch.Tensor, prefix: str = "") -> list[dict[str, float]]:
    """AUROC, accuracy and recall at 1% FPR per row of `scores` [rows, n], as plain floats."""
    stats = {"auroc": auroc(scores, labels), "accuracy": accuracy(scores, labels),
             "recall_at_1pct_fpr": recall_at_fpr(scores, labels, 0.01)}
    return [{f"{prefix}{k}": float(v[i]) for k, v in stats.items()} for i in range(scores.shape[0])]


def _binary(labels: torch.Tensor, n: int) -> torch.Tensor:
    y = torch.as_tensor(labels)
    assert y.shape == (n,), f"labels shape {list(y.shape)} does not match {n} scores"
    return y.bool() if y.dtype == torch.bool else y != 0
