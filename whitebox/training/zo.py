"""Zeroth-order training (SPSA as in MeZO): two loss values per random direction, no backward.

The direction z is regenerated from a seed parameter by parameter and applied in place, so memory
stays that of inference plus one parameter-sized noise tensor. Under torchrun the directions of a
step are shared out across ranks: each evaluates its own and only replays the others' perturbations
(so every rank's weights follow the single-process arithmetic bit for bit), and the ranks exchange
the loss values. With samples = 1 (the default) there is nothing to share out: rank 0 evaluates the
one direction, the others replay it, and every rank makes the same update.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field

from whitebox.config.schema import Section
from whitebox.runtime import distributed
from whitebox.training.loop import Batch, LossFn, TrainingDiverged
from whitebox.training.noise import derive_seed, generator


class ZOConfig(Section):
    """`treat.zo`: SPSA settings."""

    lr: float = Field(1e-3, gt=0, description="SGD learning rate on the SPSA gradient estimate")
    eps: float = Field(1e-3, gt=0, description="perturbation scale of the two-sided difference")
    samples: int = Field(1, ge=1, description="random directions averaged per step")
    weight_decay: float = Field(0.0, ge=0, description="decoupled weight decay")


class ZerothOrder:
    """theta -= lr * mean_q[(L(theta + eps z_q) - L(theta - eps z_q)) / (2 eps) * z_q] using the loop's loss_fn."""

    def __init__(self, model: torch.nn.Module, cfg: ZOConfig, *, seed: int):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.cfg, self.seed = cfg, seed
        self.steps_done = 0

    @torch.no_grad()
    def step(self, model: torch.nn.Module, batch: Batch, loss_fn: LossFn) -> dict[str, float]:
        eps = self.cfg.eps
        seeds = [derive_seed(self.seed, self.steps_done, q) for q in range(self.cfg.samples)]
        mine = distributed.shard(len(seeds))
        losses = []  # [plus, minus] of this rank's directions
        for q, seed in enumerate(seeds):
            evaluated = mine.start <= q < mine.stop  # the other ranks' directions are only replayed
            self._perturb(seed, eps)
            plus = _value(loss_fn, model, batch) if evaluated else 0.0
            self._perturb(seed, -2 * eps)
            minus = _value(loss_fn, model, batch) if evaluated else 0.0
            self._perturb(seed, eps)
            if evaluated:
                losses.append([plus, minus])
        pairs = torch.tensor(losses, dtype=torch.float64).reshape(-1, 2)
        pairs = distributed.gather_rows(pairs, len(seeds)).tolist()  # samples 2, every rank's
        if distributed.active() and not all(math.isfinite(v) for pair in pairs for v in pair):
            raise TrainingDiverged("a loss became non-finite")  # on every rank at once
        projected = [(seed, (plus - minus) / (2 * eps)) for seed, (plus, minus) in zip(seeds, pairs)]
        if self.cfg.weight_decay:
            for p in self.params:
                p.mul_(1 - self.cfg.lr * self.cfg.weight_decay)
        for seed, grad in projected:
            self._perturb(seed, -self.cfg.lr * grad / self.cfg.samples)
        self.steps_done += 1
        rows = len(next(iter(batch.values())))
        return {
            "loss": sum(sum(pairs, [])) / (2 * len(pairs)),
            "projected_grad": sum(abs(g) for _, g in projected) / len(projected),
            "lr": self.cfg.lr,
            "forward_equivalents": 2 * self.cfg.samples * rows,
            "examples": rows,
        }

    def _perturb(self, seed: int, scale: float) -> None:
        """theta += scale * z(seed), drawing z one parameter at a time in a fixed order."""
        gen = generator(seed, self.params[0].device)
        for p in self.params:
            z = torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype)
            p.add_(z, alpha=scale)

    def state_dict(self) -> dict[str, Any]:
        return {"steps_done": self.steps_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps_done = int(state["steps_done"])


def _value(loss_fn: LossFn, model: torch.nn.Module, batch: Batch) -> float:
    """The loss as a float; under torchrun a non-finite one is NaN here, so that all ranks stop together."""
    try:
        return float(loss_fn(model, batch))
    except TrainingDiverged:
        if not distributed.active():
            raise
        return math.nan
