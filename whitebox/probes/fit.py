"""Fit one probe per hook in one batched solve, with held-out metrics and a shuffled-label control.

Every fit also trains the same probe on a seeded permutation of the labels (the control task).
`selectivity = auroc - control_auroc`, both on the held-out split when one is given (else on the
training data, where a probe that can memorise random labels shows a high control AUROC).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from whitebox import __version__
from whitebox.capture import Captured
from whitebox.probes.artifact import data_sha256, now
from whitebox.probes.ccs import pair_scores
from whitebox.probes.kinds import probe_kind
from whitebox.probes.linalg import LinearFit
from whitebox.probes.metrics import auroc, summary
from whitebox.probes.probe import Probe

Acts = Mapping[str, torch.Tensor | np.ndarray]
HeldOut = Captured | tuple[Acts, Any]


def fit_probes(
    acts: Acts | Captured,
    labels: torch.Tensor | np.ndarray | Sequence | None = None,
    kind: str = "logistic",
    *,
    C: float = 1.0,
    held_out: HeldOut | None = None,
    control: bool = True,
    seed: int = 0,
    position: Any = None,
    model: dict[str, Any] | None = None,
    data_description: str = "",
    device: str | torch.device = "auto",
) -> dict[str, Probe]:
    """One probe per hook of acts {hook: [n, d]} for binary labels [n], metrics attached; keyed by hook.

    kind: a registered kind that fits per hook (logistic: L2, inverse strength C as in scikit-learn;
    mean_diff; lda; see whitebox.probes.kinds). A Captured
    supplies labels, position rule and model identity itself. Hooks of equal width are solved
    together on `device` ("auto": the GPU when there is one).
    """
    if kind == "ccs":
        raise ValueError("CCS learns from contrast pairs without labels: use fit_ccs_probes(acts_pos, acts_neg)")
    fitter = probe_kind(kind).fit
    if fitter is None:
        raise ValueError(f"probe kind {kind!r} is not fitted per hook from binary labels")
    locations = acts.locations if isinstance(acts, Captured) else None
    prompt = acts.prompt_format if isinstance(acts, Captured) else None
    acts, labels, position, model = _unpack(acts, labels, position, model)
    y = _binary(labels, _rows(acts))
    eval_acts, eval_y = _unpack_held_out(held_out)
    dev = _device(device)
    perm = torch.randperm(len(y), generator=_gen(seed))
    label_sets = torch.stack([y, y[perm]]) if control else y[None]  # k n
    eval_control_y = None if eval_y is None else eval_y[torch.randperm(len(eval_y), generator=_gen(seed + 1))]
    probes: dict[str, Probe] = {}
    for group in _by_width(acts):
        x = _stack(acts, group, dev)  # hooks n d, a copy the solver may standardise in place
        bad = [h for h, ok in zip(group, torch.isfinite(x).flatten(1).all(1).tolist(), strict=True) if not ok]
        if bad:
            raise ValueError(f"activations of {bad} contain NaN or infinity")
        fit, hyper = fitter(x, label_sets.to(dev), C)
        del x
        train_scores = fit.scores(_stack(acts, group, dev)).cpu()  # hooks k n
        eval_scores = None if eval_acts is None else fit.scores(_stack(eval_acts, group, dev)).cpu()
        metrics = _metrics(train_scores, y, label_sets[-1], eval_scores, eval_y, eval_control_y)
        hyper |= {"seed": seed, "control": "shuffled_labels" if control else None}
        for i, hook in enumerate(group):
            probes[hook] = _probe(kind, hook, position, fit, i, model, acts[hook], y, data_description,
                                  hyper, metrics[i])
            probes[hook].hf_location = (locations or {}).get(hook)
            probes[hook].prompt_format = prompt
    return {h: probes[h] for h in acts}


def fit_ccs_probes(
    acts_pos: Acts,
    acts_neg: Acts,
    labels: torch.Tensor | np.ndarray | Sequence | None = None,
    *,
    held_out: tuple[Acts, Acts, Any] | None = None,
    control: bool = True,
    restarts: int = 10,
    steps: int = 1000,
    seed: int = 0,
    position: Any = "last",
    model: dict[str, Any] | None = None,
    data_description: str = "",
    device: str | torch.device = "auto",
    kind: str = "ccs",
) -> dict[str, Probe]:
    """CCS probes per hook from contrast pairs {hook: [n, d]} x 2; labels (x_pos true) only orient and score them.

    kind: a registered kind that fits from contrast pairs (its `fit_pairs`; CCS by default).

    CCS never sees labels, so there is nothing to memorise; its control is a random direction in
    the same normalisation (oriented by the same labels), which shows how much of the AUROC needs
    no search at all. Metrics are AUROCs of score(x_pos) - score(x_neg).
    """
    fitter = probe_kind(kind).fit_pairs
    if fitter is None:
        raise ValueError(f"probe kind {kind!r} is not fitted from contrast pairs")
    y = None if labels is None else _binary(labels, _rows(acts_pos))
    dev = _device(device)
    probes: dict[str, Probe] = {}
    for group in _by_width(acts_pos):
        xp = torch.stack([torch.as_tensor(acts_pos[h]) for h in group]).double().to(dev)  # hooks n d
        xn = torch.stack([torch.as_tensor(acts_neg[h]) for h in group]).double().to(dev)
        fit, loss = fitter(xp, xn, y, restarts=restarts, steps=steps, seed=seed)
        weights = [fit.weight]
        if control:
            direction = torch.randn(fit.weight.shape, generator=_gen(seed + 1), dtype=torch.float64).to(dev)
            if y is not None:
                gap = pair_scores(LinearFit(direction, torch.zeros_like(fit.bias), fit.mean, fit.std), xp, xn)[:, 0]
                direction = direction * torch.where(auroc(gap, y) < 0.5, -1.0, 1.0).to(direction)[:, None, None]
            weights.append(direction)
        both = LinearFit(torch.cat(weights, 1), fit.bias.expand(-1, len(weights)), fit.mean, fit.std)
        train = pair_scores(both, xp, xn).cpu()  # hooks k n
        eval_scores, eval_y = None, None
        if held_out is not None:
            ep, en, eval_labels = held_out
            ep_x = torch.stack([torch.as_tensor(ep[h]) for h in group]).double().to(dev)
            en_x = torch.stack([torch.as_tensor(en[h]) for h in group]).double().to(dev)
            eval_scores, eval_y = pair_scores(both, ep_x, en_x).cpu(), _binary(eval_labels, ep_x.shape[1])
        metrics = _metrics(train, y, y, eval_scores, eval_y, eval_y) if y is not None else [{} for _ in group]
        hyper = {"restarts": restarts, "steps": steps, "seed": seed, "control": "random_direction" if control else None}
        for i, hook in enumerate(group):
            metrics[i]["ccs_loss"] = float(loss[i])
            pair_acts = torch.cat([torch.as_tensor(acts_pos[hook]), torch.as_tensor(acts_neg[hook])])
            probes[hook] = _probe(kind, hook, position, fit, i, model, pair_acts, y, data_description, hyper, metrics[i])
            probes[hook].training_data["n"] = len(pair_acts) // 2  # pairs, as n_positive counts
    return {h: probes[h] for h in acts_pos}


def _metrics(
    train: torch.Tensor,
    y: torch.Tensor,
    control_y: torch.Tensor,
    held: torch.Tensor | None,
    held_y: torch.Tensor | None,
    held_control_y: torch.Tensor | None,
) -> list[dict[str, Any]]:
    """Per-hook metrics from scores [hooks, k, n]: k = 0 is the probe, k = 1 (if any) the control.

    The control is scored against its own task's labels (control_y, held_control_y): on the
    training data that measures how well the probe memorises noise.
    """
    hooks, k, _ = train.shape
    train_stats = summary(train[:, 0], y, "train_")
    main = summary(held[:, 0], held_y) if held is not None else summary(train[:, 0], y)
    out = []
    for i in range(hooks):
        m: dict[str, Any] = {"split": "held_out" if held is not None else "train", **main[i], **train_stats[i]}
        m |= {"n_train": int(train.shape[-1])} | ({"n_eval": int(held.shape[-1])} if held is not None else {})
        if k > 1:
            m["control_train_auroc"] = float(auroc(train[i : i + 1, 1], control_y)[0])
            m["control_auroc"] = m["control_train_auroc"]
            if held is not None:
                m["control_auroc"] = float(auroc(held[i : i + 1, 1], held_control_y)[0])
            m["selectivity"] = m["auroc"] - m["control_auroc"]
        out.append(m)
    return out


def _probe(kind, hook, position, fit: LinearFit, i: int, model, acts, y, description, hyper, metrics) -> Probe:
    """The k = 0 read-out of hook i as a standalone float32 Probe with its provenance."""
    n_pos = None if y is None else int(y.sum())
    data = {"description": description, "sha256": data_sha256(torch.as_tensor(acts), y),
            "n": int(torch.as_tensor(acts).shape[0]), "n_positive": n_pos}
    if fit.converged is not None:
        metrics["converged"] = bool(fit.converged[i, 0])
    return Probe(kind=kind, hook=hook, position=position, weight=fit.weight[i, 0].float().cpu(),
                 bias=fit.bias[i, 0].float().cpu(), mean=fit.mean[i].float().cpu(), std=fit.std[i].float().cpu(),
                 model=model, training_data=data, hyperparameters=dict(hyper), metrics=metrics,
                 created=now(), whitebox_version=__version__)


def _unpack(acts, labels, position, model):
    if isinstance(acts, Captured):
        labels = acts.labels if labels is None else labels
        position = acts.positions if position is None else position
        model = acts.model if model is None else model
        acts = acts.acts
    if labels is None:
        raise ValueError("fit_probes needs labels (or a Captured with labels)")
    return acts, labels, "last" if position is None else position, model


def _unpack_held_out(held_out: HeldOut | None) -> tuple[Acts | None, torch.Tensor | None]:
    if held_out is None:
        return None, None
    if isinstance(held_out, Captured):
        if held_out.labels is None:
            raise ValueError("the held-out Captured has no labels")
        return held_out.acts, _binary(held_out.labels, len(held_out))
    acts, labels = held_out
    return acts, _binary(labels, _rows(acts))


def _binary(labels: Any, n: int) -> torch.Tensor:
    """Labels as a float64 0/1 tensor [n]; both classes must be present."""
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).cpu()
    if y.shape != (n,):
        raise ValueError(f"labels must have shape [{n}] to match the activations, got {list(y.shape)}")
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("labels must be binary (0/1 or bool)")
    y = y.double()
    if y.sum() == 0 or y.sum() == n:
        raise ValueError(f"labels contain a single class ({int(y[0])}); a probe needs both")
    return y


def _rows(acts: Acts) -> int:
    rows = {int(torch.as_tensor(a).shape[0]) for a in acts.values()}
    if len(rows) != 1:
        raise ValueError(f"every hook needs the same examples; got row counts {sorted(rows)}")
    return rows.pop()


def _by_width(acts: Acts) -> list[list[str]]:
    """Hooks grouped by activation width, so each group stacks into one [hooks, n, d] solve."""
    groups: dict[int, list[str]] = {}
    for hook, a in acts.items():
        shape = tuple(torch.as_tensor(a).shape)
        if len(shape) != 2:
            raise ValueError(f"{hook}: activations must be [n, d], got {list(shape)}")
        groups.setdefault(shape[1], []).append(hook)
    return list(groups.values())


def _stack(acts: Acts, group: list[str], device: torch.device) -> torch.Tensor:
    """hooks n d on `device`: float64 while that is cheap (up to 2^24 numbers, 128 MB), float32 beyond."""
    x = torch.stack([torch.as_tensor(acts[h]) for h in group])
    small = x.dtype == torch.float64 or x.numel() <= 2**24
    return x.to(device, torch.float64 if small else torch.float32)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _device(device: str | torch.device) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
