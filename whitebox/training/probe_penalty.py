"""A loss that sees inside: supervised cross-entropy plus a frozen probe's score on an activation.

The activation is read at the answer (last) position of one hook of a TransformerBridge, inside a
scoped hooks context, and the gradient flows through it into the model (never into the probe).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from pydantic import Field

from whitebox.config.schema import Section
from whitebox.tasks.base import answer_logits
from whitebox.training.loop import Batch


class ProbePenaltyConfig(Section):
    """`treat.probe_penalty`: the penalty's weight."""

    weight: float = Field(1.0, ge=0, description="weight of the mean frozen-probe score added to the loss")

ProbeScore = Callable[[torch.Tensor], torch.Tensor]
"""activations [batch, d] -> scores [batch]; higher means more of the feature the penalty removes."""


class ProbePenalty:
    """loss = CE(answer, target) + weight * mean probe_score(activation at `hook`, last position).

    A bounded score (a probability) keeps the penalty from dominating; an unbounded logit can be
    driven to minus infinity. `last` holds the two terms of the latest call for logging.
    """

    def __init__(self, probe_score: ProbeScore, hook: str, weight: float):
        self.probe_score, self.hook, self.weight = probe_score, hook, weight
        self.last: dict[str, float] = {}

    def __call__(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        captured: dict[str, torch.Tensor] = {}

        def grab(activation: torch.Tensor, hook: object) -> torch.Tensor:
            captured["act"] = activation[:, -1, :]  # batch d
            return activation

        with model.hooks(fwd_hooks=[(self.hook, grab)]):
            logits = answer_logits(model, batch["tokens"])  # batch vocab
        if "act" not in captured:
            raise ValueError(f"hook {self.hook!r} did not fire during the forward pass; check the hook name")
        ce = F.cross_entropy(logits.float(), batch["target"])
        score = self.probe_score(captured["act"].float()).mean()
        self.last = {"ce": float(ce.detach()), "probe_score": float(score.detach())}
        return ce + self.weight * score
