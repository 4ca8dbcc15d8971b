"""Early warning of grokking by a calibrated alarm, as docs/results/grokking_preregistration.md fixes it.

Every function reads a run's logged evaluations (a curve: dicts with "step" and "eval/..." keys, in
step order), so the committed records recompute every number. A signal's relative move after
memorisation, r(t), is signed so that its alarm direction is positive; the alarm is the third of
three evaluations in a row with r >= tau; tau is 1.25 times the largest move that any calibration
control run (one that never groks) holds for three evaluations in a row. Lead time is the
generalisation step minus the alarm step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from scipy import stats

from whitebox.report.stats import Interval, t_interval

Direction = Literal["rises", "falls", "either"]
Curve = list[dict]

MEMORISED = 0.99  # train accuracy that ends memorisation (M)
GENERALISED = 0.9  # test accuracy the lead times count to (G)
IN_A_ROW = 3  # evaluations past tau before an alarm: one slingshot spike does not count
MARGIN = 1.25  # tau over the largest move the calibration controls hold
MATERIAL = 0.1  # a lead over the best black-box signal must be at least this share of the mean delay G - M
MAX_FALSE_ALARM = 0.1
MAX_MISSING = 1  # seeds on which a signal may lack a lead and still meet the verdict


@dataclass(frozen=True)
class Signal:
    """A logged measure, the direction in which it announces generalisation, and whether it reads inside the model."""

    key: str
    direction: Direction
    white_box: bool


SIGNALS = {
    "restricted_loss_train": Signal("eval/restricted_loss_train", "falls", True),
    "excluded_loss": Signal("eval/excluded_loss", "rises", True),
    "fourier_key_share": Signal("eval/fourier_key_share", "rises", True),
    "fourier_gini": Signal("eval/fourier_gini", "rises", True),
    "weight_norm": Signal("eval/weight_norm", "falls", True),
    "test_anomaly": Signal("eval/test_anomaly", "either", True),
    "train_loss": Signal("eval/train_loss", "falls", False),
    "train_acc": Signal("eval/train_acc", "rises", False),
}


def first_step(curve: Curve, key: str, at_least: float, after: int = 0) -> int | None:
    """The first logged step >= `after` with `key` >= `at_least` (None if never)."""
    return next((int(r["step"]) for r in curve if r["step"] >= after and r.get(key, -math.inf) >= at_least), None)


def memorised_at(curve: Curve) -> int | None:
    """M: the first step with train accuracy >= 0.99."""
    return first_step(curve, "eval/train_acc", MEMORISED)


def generalised_at(curve: Curve) -> int | None:
    """G: the first step at or after M with test accuracy >= 0.9 (None: the run never groks)."""
    m = memorised_at(curve)
    return None if m is None else first_step(curve, "eval/test_acc", GENERALISED, after=m)


def moves(curve: Curve, signal: Signal) -> list[tuple[int, float]]:
    """(step, r) at every evaluation after M, r signed so that the alarm direction is positive.

    r = (s(t) - s(M)) / |s(M)| (negated for a falling signal); |log(s(t) / s(M))| for "either". A run
    that never memorises is read from its first evaluation.
    """
    m = memorised_at(curve)
    start = curve[0]["step"] if m is None else m
    base = next(r[signal.key] for r in curve if r["step"] == start)
    out = []
    for r in curve:
        if r["step"] <= start:
            continue
        s = r[signal.key]
        if signal.direction == "either":
            move = abs(math.log(s / base)) if s > 0 and base > 0 else math.inf
        elif s == base:
            move = 0.0
        else:
            move = (s - base) / abs(base) if base != 0 else math.copysign(math.inf, s - base)
            move = -move if signal.direction == "falls" else move
        out.append((int(r["step"]), move))
    return out


def held(curve: Curve, signal: Signal) -> list[tuple[int, float]]:
    """(step, the smallest r over that evaluation and the two before it), for every three in a row after M."""
    ms = moves(curve, signal)
    return [(ms[i][0], min(r for _, r in ms[i - IN_A_ROW + 1 : i + 1])) for i in range(IN_A_ROW - 1, len(ms))]


def threshold(controls: list[Curve], signal: Signal) -> float:
    """tau: 1.25 times the largest move any control holds three evaluations in a row (so no control alarms).

    A largest move <= 0 (no control ever moved in the alarm direction) gives tau = 0: then any
    sustained move in that direction, strictly above 0, alarms.
    """
    if not controls:
        raise ValueError("a threshold needs at least one calibration control run")
    largest = max((r for curve in controls for _, r in held(curve, signal)), default=0.0)
    return MARGIN * max(largest, 0.0)


def alarm_step(curve: Curve, signal: Signal, tau: float) -> int | None:
    """The third of the first three evaluations in a row after M with r >= tau (r > 0 when tau is 0); None: none."""
    return next((step for step, r in held(curve, signal) if r >= tau and r > 0), None)


def lead_time(curve: Curve, signal: Signal, tau: float) -> int | None:
    """G minus the alarm step (negative: the alarm came after G); None if the run never groks or never alarms."""
    g, alarm = generalised_at(curve), alarm_step(curve, signal, tau)
    return None if g is None or alarm is None else g - alarm


def warns_on_calibration(runs: list[Curve], signal: Signal, tau: float) -> bool:
    """The calibration gate: every calibration run that groks alarms strictly before its own G."""
    grokked = [curve for curve in runs if generalised_at(curve) is not None]
    return bool(grokked) and all((lead := lead_time(curve, signal, tau)) is not None and lead > 0 for curve in grokked)


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson 95% interval of a proportion k / n ((0, 1) when n is 0)."""
    if n == 0:
        return 0.0, 1.0
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class Reading:
    """One signal on the reported seeds: lead times (None: missing), false alarms on the controls, the verdict."""

    name: str
    white_box: bool
    tau: float
    calibrated: bool  # the calibration gate passed; False: "no warning at the calibrated threshold"
    leads: dict[int, int | None]
    lead: Interval
    false_alarms: int
    controls: int
    false_alarm_ci: tuple[float, float]
    over_black_box: Interval | None = None  # paired lead(w) - lead(best black-box), white-box signals only
    warns_earlier: bool = False

    @property
    def false_alarm_rate(self) -> float:
        return self.false_alarms / self.controls if self.controls else math.nan


def read_signal(name: str, runs: dict[int, Curve], controls: list[Curve], tau: float, calibrated: bool) -> Reading:
    """A signal's lead times on the reported grokking runs and its false alarms on the controls that never grok."""
    signal = SIGNALS[name]
    leads = {seed: (lead_time(curve, signal, tau) if calibrated else None) for seed, curve in runs.items()
             if generalised_at(curve) is not None}
    negatives = [curve for curve in controls if generalised_at(curve) is None]
    alarms = sum(alarm_step(curve, signal, tau) is not None for curve in negatives)
    return Reading(name, signal.white_box, tau, calibrated, leads,
                   t_interval([float(v) for v in leads.values() if v is not None]),
                   alarms, len(negatives), wilson(alarms, len(negatives)))


def black_box_leads(reading: Reading, runs: dict[int, Curve]) -> dict[int, float]:
    """A black-box signal's leads for the pairing: where it never alarmed (or failed its gate), G minus the last step
    of the budget, as if it had alarmed at the very end: the most its missing alarm can be worth."""
    out = {}
    for seed, curve in runs.items():
        if (g := generalised_at(curve)) is not None:
            lead = reading.leads.get(seed)
            out[seed] = float(g - curve[-1]["step"] if lead is None else lead)
    return out


def verdicts(readings: dict[str, Reading], runs: dict[int, Curve]) -> tuple[str | None, dict[str, Reading]]:
    """The best black-box signal (larger mean lead) and every white-box reading with its paired comparison and verdict.

    A white-box signal warns materially earlier when the 95% t interval of its paired lead difference is
    above 0, its mean is >= 10% of the mean delay G - M, its false-alarm rate is <= 1/10, and its own lead
    is missing on no more than one seed. A black-box lead that is missing counts as at the end of the budget.
    """
    black = {name: black_box_leads(r, runs) for name, r in readings.items() if not r.white_box}
    best = max(black, key=lambda name: sum(black[name].values())) if black else None
    delays = [g - memorised_at(c) for c in runs.values() if (g := generalised_at(c)) is not None]
    mean_delay = sum(delays) / len(delays) if delays else math.nan
    out = dict(readings)
    for name, r in readings.items():
        if not r.white_box:
            continue
        baseline = black.get(best, {})
        diffs = [float(lead - baseline[s]) if lead is not None and s in baseline else math.nan for s, lead in r.leads.items()]
        missing = sum(math.isnan(d) for d in diffs)
        diff = t_interval(diffs)
        earlier = (best is not None and missing <= MAX_MISSING and diff.low > 0
                   and diff.mean >= MATERIAL * mean_delay and r.false_alarm_rate <= MAX_FALSE_ALARM)
        out[name] = replace(r, over_black_box=diff, warns_earlier=bool(earlier))
    return best, out
