"""Early-warning signals for grokking: do white-box measures announce generalisation before test accuracy?

Both signals read the final residual stream at the answer position (`a b =`, last token) over all
p*p pairs, and compare the pairs the model trained on with the pairs it never saw:

- `fourier_probe_r2`: a ridge read-out fitted on the training pairs' activations to
  cos/sin(w_k (a + b)) at the model's current key frequencies (the features the generalising
  circuit builds its logits from), scored by R^2 on the test pairs, averaged over the 2K targets.
  These targets have no part that is a function of a alone or b alone, so attention's mix of the
  two embeddings cannot fake them: a high held-out R^2 means the model already computes the
  generalising features on pairs it has not memorised. ~0 (or below) for a memorising model.
- `test_anomaly`: a Mahalanobis detector (whitebox.probes.mahalanobis) fitted on one seeded half of the
  training pairs; the ratio of its mean score on the test pairs to its mean score on the other
  half of the training pairs. Both halves are scored out of sample, so 1.0 means unseen pairs are
  as typical of the model's internal distribution as seen ones (one algorithm for all pairs); far
  from 1 (either way) means the model treats unseen pairs differently (memorisation).
  `test_anomaly_auroc` is the same comparison as an AUROC (0.5 = indistinguishable). The detector
  sees no answers, so its direction is not known in advance: at memorisation (configs/grokking.yaml)
  unseen pairs were slightly more typical than seen ones (ratio 0.94, AUROC 0.43), plausibly as a
  memorising model answers them confidently wrong, which looks in-distribution.

`lead_times` turns the logged curves into "how many steps before test accuracy reached its target
did each signal cross a threshold fixed in advance"; `grokking_signals` states those thresholds.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from whitebox.capture import capture, residual_hooks
from whitebox.probes.linalg import spd_solve
from whitebox.probes.mahalanobis import fit_detectors
from whitebox.probes.metrics import auroc
from whitebox.studies.fourier import frequency_norms, key_frequencies, sum_directions

Direction = Literal["above", "below"]
Signal = tuple[str, Direction, float | None]  # (metric key, direction, threshold); None: never crosses

RIDGE = 1e-2  # on standardised features: 1% of each feature's variance; keeps dead or collinear dims harmless
PROBE_R2 = 0.5  # half of the generalising features' variance on unseen pairs is linearly readable
SPLIT_SEED = 0  # the same train halves at every evaluation, so the anomaly curve is smooth in step


@torch.no_grad()
def answer_activations(model: torch.nn.Module, p: int) -> torch.Tensor:
    """Final residual stream at the answer position for all p*p pairs (row-major a, b): [pairs, d_model]."""
    a, b = (t.flatten() for t in torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij"))
    tokens = torch.stack([a, b, torch.full_like(a, p)], dim=1)  # pairs 3
    hook = residual_hooks(model)[-1]
    return capture(model, tokens, [hook], positions="last", batch_size=4096).acts[hook].double()


def probe_r2(acts: torch.Tensor, targets: torch.Tensor, train_mask: torch.Tensor, ridge: float = RIDGE) -> float:
    """Held-out R^2 (mean over targets) of a ridge read-out fitted on the train rows and scored on the rest.

    acts [n, d], targets [n, t], train_mask [n] bool. Features are standardised on the train rows.
    """
    x, y = acts.double(), targets.double()
    x_tr, y_tr = x[train_mask], y[train_mask]
    mean, std = x_tr.mean(0), x_tr.std(0)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    z_tr = (x_tr - mean) / std  # train d
    gram = z_tr.T @ z_tr + ridge * len(z_tr) * torch.eye(x.shape[1], dtype=torch.float64, device=x.device)
    weight = spd_solve(gram[None], (z_tr.T @ (y_tr - y_tr.mean(0)))[None])[0]  # d t
    y_te = y[~train_mask]
    pred = ((x[~train_mask] - mean) / std) @ weight + y_tr.mean(0)  # test t
    resid = (y_te - pred).square().sum(0)
    total = (y_te - y_te.mean(0)).square().sum(0).clamp_min(1e-30)
    return float((1 - resid / total).mean())


def anomaly(acts: torch.Tensor, train_mask: torch.Tensor, seed: int = SPLIT_SEED) -> tuple[float, float]:
    """How unseen rows differ from seen ones to a detector fitted on half the train rows of acts [n, d].

    Returns (mean test score / mean score of the other train half, AUROC of test vs that half).
    """
    train_rows = torch.nonzero(train_mask.cpu()).flatten()
    order = train_rows[torch.randperm(len(train_rows), generator=torch.Generator().manual_seed(seed))]
    fit_rows, ref_rows = order[: len(order) // 2], order[len(order) // 2 :]
    x = acts.double().cpu()
    detector = fit_detectors({"answer": x[fit_rows]})["answer"]
    ref, test = detector.score(x[ref_rows]), detector.score(x[~train_mask.cpu()])
    labels = torch.cat([torch.zeros(len(ref)), torch.ones(len(test))])
    return float(test.mean() / ref.mean()), float(auroc(torch.cat([ref, test]), labels))


def early_warning_measures(
    model: torch.nn.Module, p: int, train_mask: torch.Tensor, n_key: int = 5
) -> dict[str, float]:
    """The white-box signals at one evaluation: Fourier-probe R^2 on unseen pairs and their anomaly."""
    acts = answer_activations(model, p).cpu()  # pairs d_model
    keys = key_frequencies(frequency_norms(model.W_E[:p].detach().double().cpu()), n_key)
    train_mask = train_mask.cpu()
    ratio, separation = anomaly(acts, train_mask)
    return {
        "fourier_probe_r2": probe_r2(acts, sum_directions(p, keys), train_mask),
        "test_anomaly": ratio,
        "test_anomaly_auroc": separation,
    }


def first_crossing(
    records: list[dict], key: str, direction: Direction, threshold: float | None, after: int = 0
) -> int | None:
    """The first logged step >= `after` at which `key` is at or past `threshold` (None if never)."""
    if threshold is None or not math.isfinite(threshold):
        return None
    for r in records:
        value = r.get(key)
        if r["step"] < after or value is None or not math.isfinite(value):
            continue
        if (value >= threshold) if direction == "above" else (value <= threshold):
            return int(r["step"])
    return None


def crossing_steps(records: list[dict], signals: dict[str, Signal], after: int = 0) -> dict[str, int | None]:
    """The crossing step of every signal, keyed by signal name."""
    return {name: first_crossing(records, *signal, after=after) for name, signal in signals.items()}


def lead_times(
    records: list[dict],
    signals: dict[str, Signal],
    target_key: str = "eval/test_acc",
    target: float = 0.9,
    after: int = 0,
) -> dict[str, int | None]:
    """Steps by which each signal's crossing precedes `target_key` reaching `target` (negative: it lagged).

    None where the signal or the target never crosses. Crossings before `after` are ignored.
    """
    goal = first_crossing(records, target_key, "above", target, after)
    steps = crossing_steps(records, signals, after)
    return {name: None if goal is None or step is None else goal - step for name, step in steps.items()}


def halfway_to(value: float | None, goal: float) -> tuple[Direction, float | None]:
    """Direction and threshold halfway in log space from a positive `value` toward a positive `goal`."""
    if value is None or not math.isfinite(value) or value <= 0 or value == goal:
        return "below", None
    return ("below" if value > goal else "above"), math.sqrt(value * goal)


def value_at(records: list[dict], key: str, step: int | None) -> float | None:
    """The value of `key` logged at `step` (None if absent)."""
    return next((r[key] for r in records if r["step"] == step and key in r), None)


def grokking_signals(records: list[dict], p: int, memorised_at: int | None) -> dict[str, Signal]:
    """The signals and thresholds for modular addition, none tuned on test accuracy.

    fourier_probe: R^2 >= 0.5 (half the variance of the generalising features readable on unseen
    pairs). test_anomaly: halfway (in log space) from its value at the memorisation step to 1.0,
    the value of a model that treats unseen pairs like seen ones. test_logprob (the continuous
    output metric, a black-box baseline): halfway from chance, -log p, to a perfect 0. Restricted
    loss is not a signal here: it is already below half of chance at memorisation (p = 43), so any
    such threshold would credit it with the whole grokking delay.
    """
    anomaly_direction, anomaly_threshold = halfway_to(value_at(records, "eval/test_anomaly", memorised_at), 1.0)
    return {
        "fourier_probe": ("eval/fourier_probe_r2", "above", PROBE_R2),
        "test_anomaly": ("eval/test_anomaly", anomaly_direction, anomaly_threshold),
        "test_logprob": ("eval/test_logprob", "above", -math.log(p) / 2),
    }
