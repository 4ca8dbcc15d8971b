import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from whitebox.report.stats import holm, log_ratios, t_interval, tost_p, verdict


def test_t_interval_is_the_textbook_interval():
    x = [0.1, -0.3, 0.25, 0.05, -0.1, 0.4]
    iv = t_interval(x, 0.95)
    half = sps.t.ppf(0.975, 5) * np.std(x, ddof=1) / math.sqrt(6)
    assert iv.mean == pytest.approx(np.mean(x)) and iv.n == 6
    assert (iv.low, iv.high) == pytest.approx((np.mean(x) - half, np.mean(x) + half))
    assert iv.ratio().mean == pytest.approx(math.exp(np.mean(x)))


def test_degenerate_inputs():
    assert math.isnan(t_interval([1.0]).low) and t_interval([]).n == 0
    assert t_interval([0.2, 0.2, 0.2]).low == 0.2
    assert t_interval([0.1, math.nan, 0.3]).n == 2
    with pytest.raises(ValueError, match="pair them by seed"):
        log_ratios([1, 2], [1])
    with pytest.raises(ValueError, match="positive"):
        log_ratios([0, 2], [1, 1])
    assert log_ratios([20, 10], [10, 10]) == pytest.approx([math.log(2), 0.0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-2, 2), min_size=3, max_size=12), st.floats(0.05, 1.0))
def test_tost_agrees_with_the_90_percent_interval(x, bound):
    """TOST at 0.05 rejects non-equivalence exactly when the 90% interval lies inside the bounds."""
    if np.ptp(x) < 1e-6:
        return
    iv = t_interval(x, 0.90)
    inside = -bound < iv.low and iv.high < bound
    p = tost_p(x, bound)
    if abs(p - 0.05) > 1e-9:
        assert (p < 0.05) == inside


def test_holm_matches_the_step_down_rule():
    adj = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": math.nan})
    assert adj["a"] == pytest.approx(0.03) and adj["c"] == pytest.approx(0.06) and adj["b"] == pytest.approx(0.06)
    assert math.isnan(adj["d"])
    assert holm({"a": 0.9, "b": 0.8})["a"] == 1.0


def test_verdicts_come_from_intervals_not_means():
    rng = np.random.default_rng(0)
    equal = list(rng.normal(0.0, 0.05, 10))  # treated re-learns as fast as its yardstick: removed
    faster = list(rng.normal(math.log(0.3), 0.1, 10))  # 3x faster: suppressed
    noisy = list(rng.normal(math.log(0.5), 1.5, 10))  # mean below the bound, interval wide
    assert verdict(equal, equivalence=math.log(1.5), suppressed_below=0.67) == "removed"
    assert verdict(faster, equivalence=math.log(1.5), suppressed_below=0.67) == "suppressed"
    assert np.mean(noisy) < math.log(0.67)
    assert verdict(noisy, equivalence=math.log(1.5), suppressed_below=0.67) == "inconclusive"
    assert verdict(faster[:1], equivalence=0.4, suppressed_below=0.67) == "inconclusive"


def test_more_contrasts_widen_the_interval():
    x = list(np.random.default_rng(1).normal(-0.45, 0.35, 10))
    assert verdict(x, 0.1, 0.9, m=1) == "suppressed"
    assert verdict(x, 0.1, 0.9, m=200) == "inconclusive"


def test_an_interval_is_recorded_as_mean_low_high_and_n():
    iv = t_interval([1.0, 2.0, 3.0], 0.95)
    assert iv.as_json() == {"mean": 2.0, "low": iv.low, "high": iv.high, "n": 3}
    assert iv.low == pytest.approx(2.0 - 4.302653 / 3**0.5, rel=1e-6)
