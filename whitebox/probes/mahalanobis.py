"""Anomaly detectors on activations, fitted on trusted clean data only (Mahalanobis first).

score(x) = (x - mean)' S^-1 (x - mean), with S the clean activations' covariance after Ledoit-Wolf
shrinkage of their correlation matrix toward the identity (see linalg.shrunk_covariance). The
detector never sees a triggered example or label; labels only enter the optional held-out
evaluation (AUROC of triggered vs clean). Saved as detector.safetensors + detector.json through the
HookArtifact base it shares with probes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np
import torch

from whitebox import __version__
from whitebox.capture import Captured
from whitebox.probes.artifact import ArtifactMeta, HookArtifact, data_sha256, loaded_fields, now, read_artifact
from whitebox.probes.linalg import shrunk_covariance, spd_inverse
from whitebox.probes.metrics import summary
from whitebox.runtime.artifacts import ProbeError

STEM = "detector"
RIDGE = 1e-6  # added to the correlation matrix's diagonal, so a constant or duplicated feature stays invertible


class DetectorMeta(ArtifactMeta):
    detector_type: Literal["mahalanobis"]


@dataclass(kw_only=True)
class MahalanobisDetector(HookArtifact):
    """Squared Mahalanobis distance of activations [..., d_model] at `hook` from the clean distribution."""

    STEM = STEM
    TYPE_KEY = "detector_type"

    mean: torch.Tensor  # d, float64
    precision: torch.Tensor  # d d, float64: inverse of the shrunk covariance

    @property
    def type_name(self) -> str:
        return "mahalanobis"

    @property
    def d_model(self) -> int:
        return int(self.mean.shape[0])

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "precision": self.precision}

    def score(self, acts: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Anomaly scores [...] of activations [..., d_model]; higher means further from the clean data."""
        if acts.shape[-1:] != (self.d_model,):
            raise ProbeError(f"detector at {self.hook}: expects activations [..., {self.d_model}], got {list(acts.shape)}")
        if isinstance(acts, np.ndarray):
            xc = acts.astype(np.float64) - self.mean.double().numpy()
            return np.einsum("...i,ij,...j->...", xc, self.precision.double().numpy(), xc)
        # float64 inside: the precision matrix of near-collinear activations is badly conditioned.
        xc = acts.double() - self.mean.to(acts.device, torch.float64)
        dist = torch.einsum("...i,ij,...j->...", xc, self.precision.to(acts.device, torch.float64), xc)
        return dist.to(acts.dtype if acts.is_floating_point() else torch.float32)


def fit_detectors(
    clean: Mapping[str, torch.Tensor | np.ndarray] | Captured,
    *,
    held_out: Captured | tuple[Mapping[str, Any], Any] | None = None,
    position: Any = None,
    model: dict[str, Any] | None = None,
    locations: dict[str, dict[str, Any]] | None = None,
    prompt_format: dict[str, Any] | None = None,
    data_description: str = "",
) -> dict[str, MahalanobisDetector]:
    """One Mahalanobis detector per hook from trusted clean activations {hook: [n, d]}, keyed by hook.

    held_out (activations and 0/1 labels, 1 = triggered) adds AUROC, recall at 1% FPR and the flag
    rates at the clean 99th percentile to each detector's metrics; it never influences the fit.
    """
    if isinstance(clean, Captured):
        locations = clean.locations if locations is None else locations
        prompt_format = clean.prompt_format if prompt_format is None else prompt_format
        position = clean.positions if position is None else position
        model = clean.model if model is None else model
        clean = clean.acts
    eval_acts, eval_y = (held_out.acts, held_out.labels) if isinstance(held_out, Captured) else (held_out or (None, None))
    if eval_acts is not None and eval_y is None:
        raise ValueError("held_out needs labels (1 = triggered) to report AUROC; capture it with labels=...")
    detectors = {}
    for hook, acts in clean.items():
        x = torch.as_tensor(acts).double()  # n d
        if x.dim() != 2 or x.shape[0] < 2:
            raise ValueError(f"{hook}: clean activations must be [n >= 2, d], got {list(x.shape)}")
        mean = x.mean(0)
        cov, shrinkage = shrunk_covariance((x - mean)[None], RIDGE)  # 1 d d
        precision = spd_inverse(cov)[0]
        det = MahalanobisDetector(
            hook=hook, position=position if position is not None else "last", mean=mean, precision=precision,
            model=model, hf_location=(locations or {}).get(hook), prompt_format=prompt_format,
            training_data={"description": data_description, "sha256": data_sha256(x, None), "n": int(x.shape[0]),
                           "n_positive": None},
            hyperparameters={"shrinkage": float(shrinkage[0]), "covariance": "ledoit_wolf_standardised", "ridge": RIDGE},
            created=now(), whitebox_version=__version__,
        )
        det.metrics["train_score_q99"] = float(det.score(x).quantile(0.99))
        if eval_acts is not None:
            det.metrics |= evaluate_detector(det, eval_acts[hook], eval_y)
        detectors[hook] = det
    return detectors


def evaluate_detector(det: MahalanobisDetector, acts: Any, labels: Any) -> dict[str, Any]:
    """AUROC, recall at 1% FPR and the flag rate at the clean 99th percentile, triggered (1) vs clean (0)."""
    scores = torch.as_tensor(det.score(torch.as_tensor(acts).double()))
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).cpu()
    stats = summary(scores[None], y)[0]
    flagged = scores > det.metrics.get("train_score_q99", float("inf"))
    return {
        "auroc": stats["auroc"],
        "recall_at_1pct_fpr": stats["recall_at_1pct_fpr"],
        "flag_rate_triggered": float(flagged[y != 0].double().mean()),
        "flag_rate_clean": float(flagged[y == 0].double().mean()),
        "n_eval": len(y),
    }


def load_detector(directory: str | Path) -> MahalanobisDetector:
    """The detector saved in `directory`; reads only detector.json and detector.safetensors."""
    tensors, meta = read_artifact(directory, STEM, DetectorMeta,
                                  lambda m: {"mean": (m.d_model,), "precision": (m.d_model, m.d_model)})
    return MahalanobisDetector(**tensors, **loaded_fields(meta))
