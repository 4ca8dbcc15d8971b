import numpy as np
import pytest
from scipy.stats import spearmanr

from whitebox.attribution.scores import ComponentScores, agreement, spearman


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spearman_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, size=40).astype(float)  # many ties
    b = a + rng.normal(0, 2, size=40)
    b[:10] = 0.0
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_spearman_extremes():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_agreement_names_the_disagreeing_components():
    exact = ComponentScores("exact", "noise", {"L0.H0": -5.0, "L0.H1": -1.0, "L0.MLP": -3.0, "L1.H0": 0.0}, 4.0, -6.0)
    fast = ComponentScores("fast", "noise", {"L0.H0": -5.0, "L0.H1": 2.0, "L0.MLP": -3.0, "L1.H0": 0.0}, 4.0, -6.0)
    result = agreement(exact, fast, top=1)
    assert result["n"] == 4 and result["spearman"] < 1.0
    assert result["disagree"][0]["component"] == "L0.H1"
    assert result["disagree"][0]["exact"] == -1.0 and result["disagree"][0]["fast"] == 2.0


def test_normalized_and_subset():
    s = ComponentScores("m", "noise", {"L0.H0": -5.0, "L0.RESID.P1": -10.0}, 4.0, -6.0)
    assert s.normalized() == {"L0.H0": 0.5, "L0.RESID.P1": 1.0}
    assert list(s.subset(("head",)).scores) == ["L0.H0"]
