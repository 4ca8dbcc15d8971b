import math

import pytest
import torch

from whitebox.studies.early_warning import anomaly, crossing_steps, grokking_signals, halfway_to, lead_times, probe_r2
from whitebox.studies.fourier import sum_directions


def _records(**curves):
    """Records every 100 steps from per-key value lists (the test accuracy curve included)."""
    n = len(next(iter(curves.values())))
    return [{"step": 100 * i, **{f"eval/{k}": v[i] for k, v in curves.items()}} for i in range(n)]


ACC = [0.0, 0.1, 0.1, 0.2, 0.3, 0.5, 0.8, 0.95, 1.0]  # reaches 0.9 at step 700


def test_lead_times_count_steps_before_the_target_crossing():
    records = _records(test_acc=ACC, probe=[0, 0.1, 0.3, 0.6, 0.4, 0.7, 0.9, 1, 1], anomaly=[9, 9, 8, 7, 6, 5, 4, 3, 2],
                       flat=[0.0] * 9)
    signals = {"early": ("eval/probe", "above", 0.5), "late": ("eval/anomaly", "below", 1.5),
               "never": ("eval/flat", "above", 0.5), "no_threshold": ("eval/flat", "above", None),
               "missing": ("eval/absent", "above", 0.0)}
    expected = {"early": 400, "late": None, "never": None, "no_threshold": None, "missing": None}
    assert lead_times(records, signals) == expected
    signals["late"] = ("eval/anomaly", "below", 3.0)
    assert lead_times(records, signals)["late"] == 0  # crosses at the same evaluation as the target
    signals["late"] = ("eval/anomaly", "below", 2.5)
    assert lead_times(records, signals)["late"] == -100


def test_lead_times_are_none_when_the_target_is_never_reached():
    records = _records(test_acc=[0.0, 0.5, 0.8], probe=[0.0, 0.6, 0.9])
    assert lead_times(records, {"probe": ("eval/probe", "above", 0.5)}) == {"probe": None}


def test_crossings_before_after_are_ignored():
    records = _records(test_acc=ACC, probe=[0.9, 0.2, 0.2, 0.6, 0.7, 0.8, 0.9, 1, 1])
    signals = {"probe": ("eval/probe", "above", 0.5)}
    assert crossing_steps(records, signals) == {"probe": 0}
    assert crossing_steps(records, signals, after=100) == {"probe": 300}
    assert lead_times(records, signals, after=100) == {"probe": 400}


def test_halfway_thresholds_point_toward_the_goal():
    assert halfway_to(9.0, 1.0) == ("below", pytest.approx(3.0))
    assert halfway_to(0.25, 1.0) == ("above", pytest.approx(0.5))
    assert halfway_to(None, 1.0)[1] is None
    assert halfway_to(1.0, 1.0)[1] is None


def test_grokking_signals_use_the_memorisation_value_and_chance():
    records = _records(test_acc=[0.0, 0.3], test_anomaly=[1.0, 4.0])
    signals = grokking_signals(records, p=43, memorised_at=100)
    assert signals["test_anomaly"] == ("eval/test_anomaly", "below", pytest.approx(2.0))
    assert signals["fourier_probe"] == ("eval/fourier_probe_r2", "above", 0.5)
    assert signals["test_logprob"][2] == pytest.approx(-math.log(43) / 2)
    assert grokking_signals(records, p=43, memorised_at=None)["test_anomaly"][2] is None


P = 31  # 961 pairs: enough rows that a 16-wide least-squares read-out barely overfits


def _split(seed=0):
    return torch.rand(P * P, generator=torch.Generator().manual_seed(seed)) < 0.5


def _pairs():
    return (t.flatten() for t in torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij"))


def test_probe_reads_features_that_are_a_linear_function_of_the_sum():
    gen = torch.Generator().manual_seed(1)
    targets = sum_directions(P, [3, 7])  # pairs 4
    mix = torch.randn(4, 16, generator=gen, dtype=torch.float64)
    acts = targets @ mix + 1e-4 * torch.randn(P * P, 16, generator=gen, dtype=torch.float64)  # pairs 16
    assert probe_r2(acts, targets, _split()) > 0.99


def test_probe_finds_nothing_in_random_or_additive_activations():
    gen = torch.Generator().manual_seed(2)
    targets = sum_directions(P, [3, 7])
    random_acts = torch.randn(P * P, 16, generator=gen, dtype=torch.float64)
    assert abs(probe_r2(random_acts, targets, _split())) < 0.1
    a, b = _pairs()
    embed = torch.randn(P, 16, generator=gen, dtype=torch.float64)
    additive = embed[a] + 0.5 * embed[b]  # what attention over the two input tokens alone could give
    assert abs(probe_r2(additive, targets, _split())) < 0.1


def test_anomaly_is_one_when_unseen_rows_look_like_seen_ones_and_large_when_shifted():
    gen = torch.Generator().manual_seed(3)
    train = _split()
    acts = torch.randn(P * P, 16, generator=gen, dtype=torch.float64)
    ratio, separation = anomaly(acts, train)
    assert ratio == pytest.approx(1.0, abs=0.15) and separation == pytest.approx(0.5, abs=0.06)
    acts[~train] += 2.0
    ratio, separation = anomaly(acts, train)
    assert ratio > 3 and separation > 0.95
