"""Grokking's phase boundaries, plateau and prediction interval, read from logged evaluations."""

import math

import pytest

from whitebox.studies.phases import boundaries, key_frequencies, plateau, prediction_interval


def curve(**series):
    n = len(next(iter(series.values())))
    return [{"step": 100 * i, **{f"eval/{k}": v[i] for k, v in series.items()}} for i in range(n)]


def grok(plateau_evals: int, rise_evals: int) -> list[dict]:
    """Memorised at 100; test accuracy 0.05 for `plateau_evals` evaluations, then a rise to 1 over `rise_evals`."""
    test = [0.0, 0.05] + [0.05] * plateau_evals + [0.1 + 0.8 * (i + 1) / rise_evals for i in range(rise_evals)] + [1.0] * 5
    n = len(test)
    loss = [5.0, 8.0] + [8.0] * plateau_evals + [8.0 - 7.9 * (i + 1) / rise_evals for i in range(rise_evals)] + [0.01] * 5
    excluded = [0.1] * (n - 3) + [2.0, 2.0, 2.0]
    return curve(train_acc=[0.5] + [1.0] * (n - 1), test_acc=test, test_loss=loss, excluded_loss=excluded,
                 key_freq_1=[1.0] * n, key_freq_2=[7.0] * n)


def test_boundaries_follow_the_preregistered_definitions():
    run = grok(plateau_evals=30, rise_evals=4)  # M 100; rise at steps 3200-3500, accuracy 1 from 3600
    b = boundaries(run)
    assert b["memorisation"] == 100
    assert b["circuit_formation"] == 3400  # first step with test loss below half of 8.0 (2.075)
    assert b["cleanup"] == 3800  # test accuracy >= 0.99 and excluded loss >= 90% of its maximum 2.0
    assert boundaries(curve(train_acc=[0.5] * 3, test_acc=[0] * 3, test_loss=[1] * 3, excluded_loss=[1] * 3)) == {
        "memorisation": None, "circuit_formation": None, "cleanup": None}


def test_a_long_plateau_then_a_quick_rise_shows_the_phenomenon():
    long = plateau(grok(plateau_evals=30, rise_evals=4))
    assert long["plateau"] == 3100 and long["shows"]  # M 100 -> first test acc >= 0.2 at 3200
    assert long["rise"] == 400  # from 3100 (last below 0.2) to G 3500
    assert not plateau(grok(plateau_evals=10, rise_evals=2))["shows"]  # 1,100 steps of plateau is too short
    assert not plateau(grok(plateau_evals=25, rise_evals=12))["shows"]  # the rise is longer than a third
    never = curve(train_acc=[0.5] + [1.0] * 9, test_acc=[0.0] * 10)
    assert plateau(never) == {"plateau": None, "rise": None, "shows": False}


def test_key_frequencies_and_the_prediction_interval():
    assert key_frequencies(grok(5, 2), n=2) == [1, 7]
    low, high = prediction_interval([10.0, 12.0, 14.0])
    assert (low + high) / 2 == pytest.approx(12.0)
    assert high - 12.0 == pytest.approx(4.302653 * 2.0 * math.sqrt(1 + 1 / 3), rel=1e-5)
    assert all(math.isnan(v) for v in prediction_interval([1.0]))
