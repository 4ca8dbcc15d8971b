"""Contrast pairs, what a task supplies for attribution: each triggered input beside the same input without its trigger.

The metric everywhere is the logit difference deceptive answer minus honest answer at the last
position; both inputs of a pair share the honest answer, so the difference isolates the trigger.
A task builds them in its `contrast_pairs(n, seed)` (whitebox.tasks.base).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Direction = Literal["noise", "denoise"]


@dataclass(frozen=True)
class ContrastPairs:
    """Row i of `triggered` and `untriggered` differ only in the trigger; both answer `honest[i]` honestly.

    `deceptive` is the answer token the hidden behaviour gives when it fires.
    """

    triggered: torch.Tensor  # batch pos
    untriggered: torch.Tensor  # batch pos
    honest: torch.Tensor  # batch
    deceptive: int

    def __post_init__(self) -> None:
        assert self.triggered.shape == self.untriggered.shape and self.triggered.ndim == 2
        assert self.honest.shape == (self.triggered.shape[0],)

    def __len__(self) -> int:
        return int(self.triggered.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.triggered.shape[1])

    def to(self, device: str | torch.device) -> ContrastPairs:
        return ContrastPairs(self.triggered.to(device), self.untriggered.to(device), self.honest.to(device), self.deceptive)

    def runs(self, direction: Direction) -> tuple[torch.Tensor, torch.Tensor]:
        """(base, source) tokens: the run that is patched and the run activations are taken from.

        noise: patch untriggered activations into the triggered run (what does the backdoor need?);
        denoise: patch triggered activations into the untriggered run (what is enough to fire it?).
        """
        if direction == "noise":
            return self.triggered, self.untriggered
        if direction == "denoise":
            return self.untriggered, self.triggered
        raise ValueError(f"direction must be 'noise' or 'denoise', got {direction!r}")

    def metric(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-pair logit difference deceptive - honest at the last position: [batch]."""
        return logit_diff(logits, self.honest, self.deceptive)

    def mean_metric(self, logits: torch.Tensor) -> torch.Tensor:
        return self.metric(logits).mean()


def logit_diff(logits: torch.Tensor, honest: torch.Tensor, deceptive: int) -> torch.Tensor:
    """logit[deceptive] - logit[honest] at the last position, per row: [batch]."""
    last = logits[:, -1, :]  # batch vocab
    return last[:, deceptive] - last.gather(1, honest.to(last.device)[:, None])[:, 0]


def honest_margin(logits: torch.Tensor, honest: torch.Tensor) -> torch.Tensor:
    """logit[honest] minus the largest other logit at the last position, per row: [batch] (> 0: answered honestly)."""
    last = logits[:, -1, :]  # batch vocab
    honest = honest.to(last.device)[:, None]
    return last.gather(1, honest)[:, 0] - last.scatter(1, honest, float("-inf")).max(dim=1).values
