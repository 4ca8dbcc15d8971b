"""Weight decay that every regime gets alike, whatever its learning rate or number of updates.

An optimizer's decoupled decay shrinks weights by lr x wd per update, so regimes with other learning
rates and update counts (sft's ~1000 steps against ES's ~100 updates of one budget) would decay by
different amounts. Here each update is followed by a shrink of the weight matrices by
(1 - total) ** (forward-pass equivalents of the update / budget): over the whole budget every
regime's weights shrink by the same factor 1 - total, which is what lets a dormant circuit's
unused weights decay alike under every regime. Stateless, so a resumed treatment decays the same.
"""

from __future__ import annotations

from typing import Any, Callable

import torch


class BudgetDecay:
    """An Updater that applies the inner update, then shrinks every weight matrix (ndim >= 2) by its share of `total`."""

    def __init__(self, inner: Any, model: torch.nn.Module, total: float, budget: int):
        assert 0 <= total < 1 and budget > 0, (total, budget)
        self.inner, self.total, self.budget = inner, total, budget
        self.matrices = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]

    def step(self, model: torch.nn.Module, batch: dict, loss_fn: Callable) -> dict[str, float]:
        stats = self.inner.step(model, batch, loss_fn)
        factor = (1.0 - self.total) ** (stats["forward_equivalents"] / self.budget)
        with torch.no_grad():
            torch._foreach_mul_(self.matrices, factor)
        return stats

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)
