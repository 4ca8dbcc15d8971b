"""A fitted linear probe on one hook: score, save, load, and attach to a live model."""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from whitebox.probes.artifact import (
    ArtifactMeta,
    ProbeError,
    base_meta,
    check_model,
    read_artifact,
    write_artifact,
)
from whitebox.probes.live import LiveScores, attach_scorer

ProbeKind = Literal["logistic", "mean_diff", "lda", "ccs"]
STEM = "probe"


class ProbeMeta(ArtifactMeta):
    probe_type: ProbeKind


@dataclass
class Probe:
    """score(x) = ((x - mean) / std) . weight + bias for activations x [..., d_model] of `hook`.

    For logistic, lda and ccs probes the score is a logit (sigmoid gives a probability); for
    mean_diff it is a projection whose sign is the side of the class midpoint.
    """

    kind: ProbeKind
    hook: str  # canonical hook name
    position: Any  # "last" | "all" | "mask" | int
    weight: torch.Tensor  # d
    bias: torch.Tensor  # scalar
    mean: torch.Tensor  # d
    std: torch.Tensor  # d
    model: dict[str, Any] | None = None  # see artifact.model_identity; None when fitted on raw arrays
    training_data: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str | None = None
    whitebox_version: str | None = None

    @property
    def d_model(self) -> int:
        return int(self.weight.shape[0])

    def score(self, acts: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Scores of activations [..., d_model] -> [...]; torch in (differentiable), torch out; numpy in, numpy out."""
        if isinstance(acts, np.ndarray):
            self._check_width(acts.shape)
            w, b, m, s = (t.double().numpy() for t in (self.weight, self.bias, self.mean, self.std))
            return ((acts.astype(np.float64) - m) / s) @ w + b
        self._check_width(acts.shape)
        dtype = acts.dtype if acts.is_floating_point() else torch.float32
        w, b, m, s = (t.to(acts.device, dtype) for t in (self.weight, self.bias, self.mean, self.std))
        return ((acts.to(dtype) - m) / s) @ w + b

    def probability(self, acts: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """sigmoid(score): the probe's probability of the positive class (not for mean_diff)."""
        if self.kind == "mean_diff":
            raise ValueError("a mean_diff probe's score is a projection, not a logit; use score()")
        s = self.score(acts)
        return torch.sigmoid(s) if isinstance(s, torch.Tensor) else 1 / (1 + np.exp(-s))

    def attach(
        self,
        model: torch.nn.Module,
        *,
        cfg: Any = None,
        allow_fingerprint_mismatch: bool = False,
        positions: Any = None,
        detach: bool = True,
    ) -> AbstractContextManager[LiveScores]:
        """Score live at this probe's hook during any forward pass or generation, inside a `with` block.

        Checks that the model is the one the probe was fitted on: with cfg (its ModelConfig) the full
        whitebox fingerprint, otherwise the architecture and every parameter name and shape.
        positions overrides the stored rule (e.g. "all" for a probe fitted with a mask).
        detach=False keeps the scores in the autograd graph (for a loss).
        """
        where = f"probe at {self.hook}"
        check_model(self.model, model, cfg, allow_fingerprint_mismatch, where)
        rule = self.position if positions is None else positions
        return attach_scorer(model, self.hook, self.d_model, rule, self.score, where, detach)

    def save(self, directory: str | Path) -> Path:
        """Write probe.safetensors (weight, bias, mean, std) and probe.json into `directory`."""
        meta = base_meta(self.hook, self.position, self.d_model, self.model, self.training_data,
                         self.hyperparameters, _json_metrics(self.metrics))
        if self.created:
            meta["created"] = self.created
        meta = {"format_version": meta.pop("format_version"), "probe_type": self.kind, **meta}
        tensors = {"weight": self.weight, "bias": self.bias.reshape(()), "mean": self.mean, "std": self.std}
        return write_artifact(directory, STEM, tensors, meta)

    def _check_width(self, shape: tuple[int, ...]) -> None:
        if len(shape) == 0 or shape[-1] != self.d_model:
            raise ProbeError(f"probe at {self.hook}: expects activations [..., {self.d_model}], got shape {list(shape)}")


def load_probe(directory: str | Path) -> Probe:
    """The probe saved in `directory`, checked field by field; reads only probe.json and probe.safetensors."""

    def shapes(meta: ArtifactMeta) -> dict[str, tuple[int, ...]]:
        d = meta.d_model
        return {"weight": (d,), "bias": (), "mean": (d,), "std": (d,)}

    tensors, meta = read_artifact(directory, STEM, ProbeMeta, shapes)
    assert isinstance(meta, ProbeMeta)
    if not bool((tensors["std"] > 0).all()):
        raise ProbeError(f"{Path(directory) / (STEM + '.safetensors')}: tensor 'std' has non-positive entries")
    return Probe(
        kind=meta.probe_type, hook=meta.hook, position=meta.position,
        weight=tensors["weight"], bias=tensors["bias"], mean=tensors["mean"], std=tensors["std"],
        model=None if meta.model is None else meta.model.model_dump(),
        training_data=meta.training_data.model_dump(), hyperparameters=meta.hyperparameters,
        metrics=meta.metrics, created=meta.created, whitebox_version=meta.whitebox_version,
    )


def _json_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as JSON-safe plain values (NaN becomes null)."""
    out = {}
    for k, v in metrics.items():
        v = v.item() if hasattr(v, "item") else v
        out[k] = None if isinstance(v, float) and math.isnan(v) else v
    return out
