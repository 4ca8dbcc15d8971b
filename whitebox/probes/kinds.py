"""Probe kinds by name: the one list that config validation (`locate.probe`) and the probe loader both read.

A kind with a `fit` function fits one probe per hook from binary labels in one batched solve:
`fit(x [hooks, n, d], y [k, n], C) -> (LinearFit, hyperparameters)`. A kind with `fit_pairs` fits
one per hook from contrast pairs of activations (CCS): `fit_pairs(x_pos, x_neg [hooks, n, d], y [n]
or None, restarts, steps, seed) -> (LinearFit, loss [hooks])`, called by `fit_ccs_probes(kind=...)`
and by `locate.probes` on a task with contrast pairs. Kinds with neither (the multinomial read-out,
from class labels) are fitted their own way and are only loadable. `needs` says what a kind takes
beyond binary labels (what `locate.probes: all` reports when it skips one). `artifact` is the class
a saved probe of this kind loads as.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from whitebox.config.schema import add_probe_kind
from whitebox.probes.ccs import fit_ccs
from whitebox.probes.linalg import LinearFit
from whitebox.probes.logistic import fit_logistic
from whitebox.probes.mean_diff import fit_mean_diff

Fit = Callable[[torch.Tensor, torch.Tensor, float], tuple[LinearFit, dict[str, Any]]]
FitPairs = Callable[..., tuple[LinearFit, torch.Tensor]]  # (x_pos, x_neg, y, *, restarts, steps, seed)


@dataclass(frozen=True)
class ProbeKind:
    name: str
    fit: Fit | None  # per-hook batched fit from binary labels; None: fitted otherwise
    logit: bool  # the score is a logit, so probability() means something
    artifact: str  # "probe" (whitebox.probes.Probe) or "readout" (whitebox.probes.Readout)
    needs: str = ""  # without `fit`: what fitting this kind takes that a task's binary labels do not give
    fit_pairs: FitPairs | None = None  # per-hook batched fit from contrast pairs of activations


PROBE_KINDS: dict[str, ProbeKind] = {}


def register_probe_kind(
    name: str, fit: Fit | None = None, *, logit: bool = True, artifact: str = "probe", needs: str = "",
    fit_pairs: FitPairs | None = None,
) -> ProbeKind:
    """Add a probe kind; with `fit`, `locate.probe: <name>` fits it on every hook (without: say what it `needs`)."""
    if fit is None and not needs:
        raise ValueError(f"probe kind {name!r}: without a per-hook fit, say what fitting it needs (needs=...)")
    kind = ProbeKind(name, fit, logit, artifact, needs, fit_pairs)
    add_probe_kind(name, per_hook=fit is not None, needs=needs, pairs=fit_pairs is not None)
    PROBE_KINDS[name] = kind
    return kind


def probe_kind(name: str) -> ProbeKind:
    if name not in PROBE_KINDS:
        raise ValueError(f"unknown probe kind {name!r}; registered: {', '.join(PROBE_KINDS)}")
    return PROBE_KINDS[name]


def _logistic(x: torch.Tensor, y: torch.Tensor, C: float) -> tuple[LinearFit, dict[str, Any]]:
    return fit_logistic(x, y, C=C, overwrite_x=True), {"C": C}


def _mean_diff(x: torch.Tensor, y: torch.Tensor, C: float) -> tuple[LinearFit, dict[str, Any]]:
    return fit_mean_diff(x, y, lda=False), {}


def _lda(x: torch.Tensor, y: torch.Tensor, C: float) -> tuple[LinearFit, dict[str, Any]]:
    return fit_mean_diff(x, y, lda=True), {"covariance": "ledoit_wolf_standardised"}


register_probe_kind("logistic", _logistic)
register_probe_kind("mean_diff", _mean_diff, logit=False)  # a projection whose sign is the side of the class midpoint
register_probe_kind("lda", _lda)
register_probe_kind("ccs", None, needs="contrast pairs of activations without labels (fit_ccs_probes)", fit_pairs=fit_ccs)
register_probe_kind("readout", None, artifact="readout", needs="class labels of more than two classes (fit_readout)")
