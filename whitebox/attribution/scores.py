"""Per-component effect scores from any attribution method, and how two methods agree."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from whitebox.attribution.components import Component

BACKWARD_COST = 2  # a backward pass costs two forwards (the convention of training budgets, whitebox.training.loop)


def forward_equivalents(forwards: int, backwards: int) -> int:
    """Cost of a method in batched forwards over its pairs, a backward counting BACKWARD_COST."""
    return forwards + BACKWARD_COST * backwards


@dataclass
class ComponentScores:
    """Effect of moving each component from the base run to the source run on the mean logit difference.

    `scores[id]` is (estimated) metric(base with that component patched) - metric(base); the full
    effect of swapping every input is `source_metric - base_metric`.
    """

    method: str
    direction: str
    scores: dict[str, float]
    base_metric: float
    source_metric: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def components(self) -> list[Component]:
        return [Component.parse(c) for c in self.scores]

    @property
    def total_effect(self) -> float:
        return self.source_metric - self.base_metric

    def normalized(self) -> dict[str, float]:
        """Scores as shares of the total effect (1.0: that component alone carries all of it)."""
        total = self.total_effect or float("nan")
        return {c: v / total for c, v in self.scores.items()}

    def subset(self, kinds: tuple[str, ...]) -> ComponentScores:
        keep = {c: v for c, v in self.scores.items() if Component.parse(c).kind in kinds}
        return ComponentScores(self.method, self.direction, keep, self.base_metric, self.source_metric, dict(self.extra))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ComponentScores:
        keys = ("method", "direction", "scores", "base_metric", "source_metric")
        return cls(**{k: data[k] for k in keys}, extra=dict(data.get("extra", {})))

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "direction": self.direction,
            "base_metric": self.base_metric,
            "source_metric": self.source_metric,
            "scores": dict(self.scores),
            **({"extra": self.extra} if self.extra else {}),
        }


def spearman(a: torch.Tensor | list[float], b: torch.Tensor | list[float]) -> float:
    """Spearman rank correlation with average ranks for ties (as scipy.stats.spearmanr)."""
    ra, rb = _ranks(torch.as_tensor(a, dtype=torch.float64)), _ranks(torch.as_tensor(b, dtype=torch.float64))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.norm() * rb.norm()).item()
    return float((ra @ rb).item() / denom) if denom > 0 else float("nan")


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks, tied values sharing their average rank."""
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(1, len(x) + 1, dtype=x.dtype)
    _, inverse = torch.unique(x, return_inverse=True)
    sums = torch.zeros(int(inverse.max()) + 1 if len(x) else 0, dtype=x.dtype).index_add_(0, inverse, ranks)
    counts = torch.bincount(inverse).to(x.dtype)
    return (sums / counts)[inverse]


def agreement(a: ComponentScores, b: ComponentScores, top: int = 5) -> dict[str, Any]:
    """Spearman correlation of two methods' scores over their shared components, and where they disagree most.

    `disagree`: the components whose ranks differ most (what lowers Spearman; near-zero scores
    often swap places); `largest_gaps`: the components whose scores differ most.
    """
    ids = [c for c in a.scores if c in b.scores]
    va = torch.tensor([a.scores[c] for c in ids], dtype=torch.float64)
    vb = torch.tensor([b.scores[c] for c in ids], dtype=torch.float64)
    rank_gap = (_ranks(va) - _ranks(vb)).abs()

    def rows(order: torch.Tensor) -> list[dict[str, Any]]:
        return [
            {"component": ids[i], a.method: float(va[i]), b.method: float(vb[i]), "rank_gap": float(rank_gap[i])}
            for i in order[:top].tolist()
        ]

    return {
        "spearman": spearman(va, vb),
        "n": len(ids),
        "disagree": rows(torch.argsort(rank_gap, descending=True, stable=True)),
        "largest_gaps": rows(torch.argsort((va - vb).abs(), descending=True, stable=True)),
    }
