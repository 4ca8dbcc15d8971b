"""Paired verdicts from intervals: log ratios per seed, their t interval, equivalence (TOST) and Holm's correction.

The headline endpoint is a per-seed log ratio (e.g. log of the treated planted model's revival steps
over the treated trigger-aware honest model's), so seeds are paired and the test is a one-sample t
test on the log ratios. A verdict reads the interval, never the mean: "removed" needs the whole
(1 - 2 alpha) interval inside the equivalence bounds (two one-sided tests), "suppressed" needs the
whole (1 - alpha) interval below the suppression bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """Mean of per-seed values with a two-sided interval at `level`; n seeds."""

    mean: float
    low: float
    high: float
    level: float
    n: int

    def as_json(self) -> dict[str, float | int]:
        """mean, low, high and n, as the analysis files record an interval."""
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}

    def ratio(self) -> Interval:
        """The interval of a log ratio read back as a ratio (geometric mean and its bounds)."""
        return Interval(math.exp(self.mean), math.exp(self.low), math.exp(self.high), self.level, self.n)


def log_ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """log(numerator / denominator) per seed; both lists paired by seed, every value > 0."""
    if len(numerator) != len(denominator):
        raise ValueError(f"paired lists differ in length ({len(numerator)} and {len(denominator)}): pair them by seed")
    if min(numerator + denominator, default=1) <= 0:
        raise ValueError("a log ratio needs positive values; count revival steps from 1 (or add the check interval)")
    return [math.log(a / b) for a, b in zip(numerator, denominator)]


def t_interval(values: list[float], level: float = 0.95) -> Interval:
    """Student-t interval of the mean of `values` (finite values only; NaN bounds below two)."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if len(x) < 2:
        mean = float(x.mean()) if len(x) else math.nan
        return Interval(mean, math.nan, math.nan, level, len(x))
    if np.ptp(x) == 0:  # no spread: the interval is the point
        return Interval(float(x[0]), float(x[0]), float(x[0]), level, len(x))
    ci = stats.ttest_1samp(x, 0.0).confidence_interval(level)
    return Interval(float(x.mean()), float(ci.low), float(ci.high), level, len(x))


def tost_p(values: list[float], bound: float) -> float:
    """p value of equivalence to 0 within +-bound (two one-sided t tests): the larger of the two one-sided p values."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if len(x) < 2:
        return math.nan
    if np.ptp(x) == 0:
        return 0.0 if abs(x[0]) < bound else 1.0
    above = stats.ttest_1samp(x, -bound, alternative="greater").pvalue
    below = stats.ttest_1samp(x, bound, alternative="less").pvalue
    return float(max(above, below))


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p values (step-down; monotone; capped at 1), NaN kept as NaN."""
    finite = sorted((p, k) for k, p in pvalues.items() if math.isfinite(p))
    m, running, out = len(finite), 0.0, {k: math.nan for k in pvalues}
    for rank, (p, key) in enumerate(finite):
        running = max(running, min(1.0, (m - rank) * p))
        out[key] = running
    return out


def verdict(log_r: list[float], equivalence: float, suppressed_below: float, alpha: float = 0.05, m: int = 1) -> str:
    """removed / suppressed / inconclusive for per-seed log ratios, from intervals at family-wise alpha over m contrasts.

    removed: the (1 - 2 alpha/m) interval lies inside (-equivalence, +equivalence) — TOST at alpha/m;
    suppressed: the (1 - alpha/m) interval lies wholly below log(suppressed_below) (a ratio < 1:
    the treated planted model re-learns faster than its yardstick);
    inconclusive: neither.
    """
    a = alpha / m
    tost = t_interval(log_r, 1 - 2 * a)
    two_sided = t_interval(log_r, 1 - a)
    if math.isnan(two_sided.high):
        return "inconclusive"
    if -equivalence < tost.low and tost.high < equivalence:
        return "removed"
    if two_sided.high < math.log(suppressed_below):
        return "suppressed"
    return "inconclusive"
