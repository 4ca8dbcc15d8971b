"""A multinomial linear read-out: which of several classes (e.g. the true answer) is linearly readable at a hook.

Probe kind `readout`: log softmax(((x - mean) / std) @ weight + bias) over `n_classes`, fitted by
L-BFGS with L2 on the weights. Saved like any probe (probe.json + probe.safetensors, probe_type
readout); `load_readout` reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from whitebox import __version__
from whitebox.probes.artifact import ArtifactMeta, HookArtifact, data_sha256, loaded_fields, now, read_artifact
from whitebox.probes.probe import STEM, ProbeMeta
from whitebox.runtime.artifacts import ProbeError


@dataclass(kw_only=True)
class Readout(HookArtifact):
    """Log-probabilities [..., classes] of activations [..., d_model] at `hook`."""

    STEM = STEM
    TYPE_KEY = "probe_type"

    weight: torch.Tensor  # d classes
    bias: torch.Tensor  # classes
    mean: torch.Tensor  # d
    std: torch.Tensor  # d

    @property
    def type_name(self) -> str:
        return "readout"

    @property
    def d_model(self) -> int:
        return int(self.weight.shape[0])

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight, "bias": self.bias, "mean": self.mean, "std": self.std}

    def log_probs(self, acts: torch.Tensor) -> torch.Tensor:
        x = (torch.as_tensor(acts).double() - self.mean) / self.std  # n d
        return (x @ self.weight + self.bias).log_softmax(-1)  # n classes

    def score(self, acts: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The log-probabilities of every class: [..., classes]."""
        self.check_width(acts.shape)
        return self.log_probs(torch.as_tensor(acts))


def fit_readout(
    acts: torch.Tensor, labels: torch.Tensor, n_classes: int, *, hook: str = "", position: str = "last",
    l2: float = 1e-3, max_iter: int = 200, data_description: str = "",
) -> Readout:
    """Fit a multinomial logistic read-out of `labels` [n] from activations [n, d] (L2 on the weights, L-BFGS)."""
    x = torch.as_tensor(acts).double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z, y = (x - mean) / std, torch.as_tensor(labels).long()
    weight = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ weight + bias, y) + l2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    data = {"description": data_description, "sha256": data_sha256(x, y), "n": int(x.shape[0]), "n_positive": None}
    return Readout(hook=hook, position=position, weight=weight.detach(), bias=bias.detach(), mean=mean, std=std,
                   training_data=data, hyperparameters={"n_classes": n_classes, "l2": l2, "max_iter": max_iter},
                   created=now(), whitebox_version=__version__)


def load_readout(directory: str | Path) -> Readout:
    """A read-out saved in `directory`, checked like a probe."""

    def shapes(meta: ArtifactMeta) -> dict[str, tuple[int, ...]]:
        d, c = meta.d_model, meta.hyperparameters.get("n_classes")
        if not isinstance(c, int) or c < 2:
            raise ProbeError(f"{Path(directory) / (STEM + '.json')}: field 'hyperparameters.n_classes' must be an integer >= 2")
        return {"weight": (d, c), "bias": (c,), "mean": (d,), "std": (d,)}

    tensors, meta = read_artifact(directory, STEM, ProbeMeta, shapes)
    if meta.probe_type != "readout":
        raise ProbeError(f"{Path(directory) / (STEM + '.json')}: probe_type is {meta.probe_type!r}; load it with load_probe")
    return Readout(**tensors, **loaded_fields(meta))
