"""A fitted linear probe on one hook: score, save, load, and attach to a live model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import field_validator

from whitebox.probes.artifact import ArtifactMeta, HookArtifact, loaded_fields, read_artifact
from whitebox.probes.kinds import PROBE_KINDS, probe_kind
from whitebox.runtime.artifacts import ProbeError

STEM = "probe"


class ProbeMeta(ArtifactMeta):
    probe_type: str

    @field_validator("probe_type")
    @classmethod
    def _registered(cls, value: str) -> str:
        if value not in PROBE_KINDS:
            raise ValueError(f"unknown probe kind {value!r}; registered: {', '.join(PROBE_KINDS)}")
        return value


@dataclass(kw_only=True)
class Probe(HookArtifact):
    """score(x) = ((x - mean) / std) . weight + bias for activations x [..., d_model] of `hook`.

    For logistic, lda and ccs probes the score is a logit (sigmoid gives a probability); for
    mean_diff it is a projection whose sign is the side of the class midpoint.
    """

    STEM = STEM
    TYPE_KEY = "probe_type"

    kind: str  # a registered probe kind (whitebox.probes.kinds)
    weight: torch.Tensor  # d
    bias: torch.Tensor  # scalar
    mean: torch.Tensor  # d
    std: torch.Tensor  # d

    @property
    def type_name(self) -> str:
        return self.kind

    @property
    def d_model(self) -> int:
        return int(self.weight.shape[0])

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight, "bias": self.bias.reshape(()), "mean": self.mean, "std": self.std}

    def score(self, acts: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Scores of activations [..., d_model] -> [...]; torch in (differentiable), torch out; numpy in, numpy out."""
        self.check_width(acts.shape)
        if isinstance(acts, np.ndarray):
            w, b, m, s = (t.double().numpy() for t in (self.weight, self.bias, self.mean, self.std))
            return ((acts.astype(np.float64) - m) / s) @ w + b
        # at least float32: a bf16 model's activations give scores as precise as a float32 model's
        dtype = torch.promote_types(acts.dtype, torch.float32) if acts.is_floating_point() else torch.float32
        w, b, m, s = (t.to(acts.device, dtype) for t in (self.weight, self.bias, self.mean, self.std))
        return ((acts.to(dtype) - m) / s) @ w + b

    def probability(self, acts: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """sigmoid(score): the probe's probability of the positive class (only for kinds whose score is a logit)."""
        if not probe_kind(self.kind).logit:
            raise ValueError(f"a {self.kind} probe's score is a projection, not a logit; use score()")
        s = self.score(acts)
        return torch.sigmoid(s) if isinstance(s, torch.Tensor) else 1 / (1 + np.exp(-s))


def load_probe(directory: str | Path) -> Probe:
    """The probe saved in `directory`, checked field by field; reads only probe.json and probe.safetensors."""

    def shapes(meta: ProbeMeta) -> dict[str, tuple[int, ...]]:
        if (artifact := probe_kind(meta.probe_type).artifact) != "probe":
            raise ProbeError(f"{Path(directory) / (STEM + '.json')}: a {meta.probe_type} probe loads with "
                             f"whitebox.probes.load_{artifact}")
        d = meta.d_model
        return {"weight": (d,), "bias": (), "mean": (d,), "std": (d,)}

    tensors, meta = read_artifact(directory, STEM, ProbeMeta, shapes)
    assert isinstance(meta, ProbeMeta)
    if not bool((tensors["std"] > 0).all()):
        raise ProbeError(f"{Path(directory) / (STEM + '.safetensors')}: tensor 'std' has non-positive entries")
    return Probe(kind=meta.probe_type, **tensors, **loaded_fields(meta))
