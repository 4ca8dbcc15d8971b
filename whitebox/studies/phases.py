"""Grokking's phases read from a run's logged evaluations, as docs/results/grokking_preregistration.md defines them.

Memorisation ends at M (train accuracy >= 0.99); circuit formation ends when test loss has fallen
below half its value at M; cleanup ends when, after that, test accuracy is >= 0.99 and excluded
loss (key frequencies removed, training pairs) is at least 90% of its maximum over the run. The
plateau is the stretch after M with test accuracy below 0.2.
"""

from __future__ import annotations

import math

from scipy import stats

from whitebox.studies.alarms import Curve, first_step, generalised_at, memorised_at

PAPER = {"memorisation": 1_400, "circuit_formation": 9_400, "cleanup": 13_300}  # Nanda et al. 2023, epochs
CHANCE_BAND = 0.2  # test accuracy below this counts as the plateau
MIN_PLATEAU = 2_000  # steps of plateau after M for "the phenomenon is shown"
RISE_SHARE = 1 / 3  # the rise from the plateau to G must be shorter than this share of the plateau
CLEANUP_ACC, CLEANUP_EXCLUDED = 0.99, 0.9


def boundaries(curve: Curve) -> dict[str, int | None]:
    """The step at which each phase ends (None where the run never gets there)."""
    m = memorised_at(curve)
    out: dict[str, int | None] = {"memorisation": m, "circuit_formation": None, "cleanup": None}
    if m is None:
        return out
    half = 0.5 * next(r["eval/test_loss"] for r in curve if r["step"] == m)
    circuit = next((int(r["step"]) for r in curve if r["step"] > m and r["eval/test_loss"] < half), None)
    out["circuit_formation"] = circuit
    if circuit is not None:
        most = max(r["eval/excluded_loss"] for r in curve)
        out["cleanup"] = next((int(r["step"]) for r in curve if r["step"] > circuit and r["eval/test_acc"] >= CLEANUP_ACC
                               and r["eval/excluded_loss"] >= CLEANUP_EXCLUDED * most), None)
    return out


def plateau(curve: Curve) -> dict[str, int | bool | None]:
    """Plateau length (M to the first evaluation with test accuracy >= 0.2), the rise from the last evaluation below
    0.2 to G, and whether they show the phenomenon (plateau >= 2,000 steps, rise < a third of it)."""
    m, g = memorised_at(curve), generalised_at(curve)
    end = None if m is None else first_step(curve, "eval/test_acc", CHANCE_BAND, after=m + 1)
    if end is None or g is None:
        return {"plateau": None if end is None or m is None else end - m, "rise": None, "shows": False}
    last_below = max(int(r["step"]) for r in curve if r["step"] < end)
    length, rise = end - m, g - last_below
    return {"plateau": length, "rise": rise, "shows": length >= MIN_PLATEAU and rise < RISE_SHARE * length}


def key_frequencies(curve: Curve, n: int = 5) -> list[int]:
    """The n strongest frequencies of the embedding at the last evaluation, strongest first."""
    last = curve[-1]
    return [int(last[f"eval/key_freq_{i}"]) for i in range(1, n + 1) if f"eval/key_freq_{i}" in last]


def prediction_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t prediction interval for one more draw: mean +- t * sd * sqrt(1 + 1/n) (NaN below two values)."""
    x = [v for v in values if math.isfinite(v)]
    n = len(x)
    if n < 2:
        return math.nan, math.nan
    mean = sum(x) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd * math.sqrt(1 + 1 / n)
    return mean - half, mean + half
