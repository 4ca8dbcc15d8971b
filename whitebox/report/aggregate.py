"""Numbers over seeds: mean with the half-width of its 95% Student-t interval, and per-seed tables beside it."""

from __future__ import annotations

import math
import statistics
from typing import Callable

from scipy import stats


def ci95(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t interval (NaN for fewer than two finite values)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, float(stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)))


def mean_ci_text(mean: float, half: float, digits: int) -> str:
    """"mean ± half" at `digits` decimals; the mean alone without an interval, "" without a mean (a table cell)."""
    if math.isnan(mean):
        return ""
    return f"{mean:.{digits}f}" + ("" if math.isnan(half) else f" ± {half:.{digits}f}")


def seed_table(rows: dict[int, dict[str, float]], digits: Callable[[str], int] = lambda key: 3) -> tuple[str, dict]:
    """Per-seed values side by side with mean ± 95% CI: the printed table and {key: {mean, ci95, n}}."""
    keys = list(next(iter(rows.values())))
    width = max(20, *(len(k) + 2 for k in keys))
    lines = [f"{'':<{width}}" + "".join(f"{'s' + str(seed):>9}" for seed in rows) + f"{'mean ± 95% CI':>22}{'n':>4}"]
    summary = {}
    for key in keys:
        values = [rows[seed][key] for seed in rows]
        mean, half = ci95(values)
        summary[key] = {"mean": mean, "ci95": half, "n": sum(math.isfinite(v) for v in values)}
        d = digits(key)
        lines.append(f"{key:<{width}}" + "".join(f"{v:>9.{d}f}" for v in values) + f"{mean:>13.{d}f} ± {half:<7.{d}f}"
                     f"{summary[key]['n']:>4}")
    return "\n".join(lines), summary
