"""The pre-registered alarm: moves after memorisation, three in a row past a threshold calibrated on controls."""

import math

import pytest

from whitebox.studies.alarms import (
    SIGNALS,
    Signal,
    alarm_step,
    black_box_leads,
    generalised_at,
    held,
    lead_time,
    memorised_at,
    moves,
    read_signal,
    threshold,
    verdicts,
    warns_on_calibration,
    wilson,
)


def curve(**series):
    """Evaluations every 100 steps from per-key value lists."""
    n = len(next(iter(series.values())))
    return [{"step": 100 * i, **{f"eval/{k}": v[i] for k, v in series.items()}} for i in range(n)]


TRAIN = [0.1, 0.995, 1, 1, 1, 1, 1, 1, 1, 1]  # memorised at step 100
TEST = [0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.5, 0.95, 1, 1]  # generalised at step 700
RISES = Signal("eval/s", "rises", True)


def test_memorisation_and_generalisation_steps():
    run = curve(train_acc=TRAIN, test_acc=TEST)
    assert memorised_at(run) == 100 and generalised_at(run) == 700
    assert generalised_at(curve(train_acc=TRAIN, test_acc=[0.95] + [0.5] * 9)) is None  # before M does not count
    assert memorised_at(curve(train_acc=[0.5] * 3, test_acc=[0] * 3)) is None


def test_moves_are_relative_to_the_value_at_memorisation_and_signed_by_direction():
    run = curve(train_acc=TRAIN, test_acc=TEST, s=[9, 2, 2, 3, 1, 4, 2, 2, 2, 2])
    assert moves(run, RISES)[:4] == [(200, 0.0), (300, 0.5), (400, -0.5), (500, 1.0)]
    assert moves(run, Signal("eval/s", "falls", True))[1] == (300, -0.5)
    either = moves(run, Signal("eval/s", "either", True))
    assert either[2] == (400, pytest.approx(math.log(2)))  # halving counts as much as doubling


def test_an_alarm_needs_three_evaluations_in_a_row_and_is_raised_at_the_third():
    spike = curve(train_acc=TRAIN, test_acc=TEST, s=[1, 1, 1, 5, 1, 1, 1, 1, 1, 1])  # one slingshot spike
    assert alarm_step(spike, RISES, 1.0) is None
    steady = curve(train_acc=TRAIN, test_acc=TEST, s=[1, 1, 1, 3, 3, 3, 3, 1, 1, 1])
    assert held(steady, RISES)[:4] == [(400, 0.0), (500, 2.0), (600, 2.0), (700, 0.0)]
    assert alarm_step(steady, RISES, 2.0) == 500 and alarm_step(steady, RISES, 2.1) is None
    assert lead_time(steady, RISES, 2.0) == 200  # G 700 - alarm 500
    late = curve(train_acc=TRAIN, test_acc=TEST, s=[1, 1, 1, 1, 1, 1, 1, 3, 3, 3])
    assert lead_time(late, RISES, 1.0) == -200  # an alarm after G is a negative lead


def test_the_threshold_is_a_quarter_above_the_largest_move_any_control_holds():
    controls = [curve(train_acc=TRAIN, test_acc=[0] * 10, s=[1, 1, 1.4, 1.4, 1.4, 1.9, 1, 1, 1, 1]),
                curve(train_acc=TRAIN, test_acc=[0] * 10, s=[1, 1, 1.2, 1.2, 1.2, 1.2, 1.2, 1, 1, 1])]
    tau = threshold(controls, RISES)
    assert tau == pytest.approx(1.25 * 0.4)  # the 0.9 spike is held for one evaluation only
    assert all(alarm_step(c, RISES, tau) is None for c in controls)  # no calibration control alarms
    flat = [curve(train_acc=TRAIN, test_acc=[0] * 10, s=[1, 1] + [0.5] * 8)]
    assert threshold(flat, RISES) == 0.0
    assert alarm_step(flat[0], RISES, 0.0) is None  # tau 0 alarms only on a move strictly in the alarm direction
    with pytest.raises(ValueError, match="calibration control"):
        threshold([], RISES)


def test_the_calibration_gate_needs_every_grokking_run_to_alarm_before_its_own_generalisation():
    early = curve(train_acc=TRAIN, test_acc=TEST, s=[1, 1, 2, 2, 2, 2, 2, 2, 2, 2])
    late = curve(train_acc=TRAIN, test_acc=TEST, s=[1, 1, 1, 1, 1, 1, 2, 2, 2, 2])
    never = curve(train_acc=TRAIN, test_acc=[0] * 10, s=[1] * 10)
    assert warns_on_calibration([early, never], RISES, 0.5)
    assert not warns_on_calibration([early, late], RISES, 0.5)
    assert not warns_on_calibration([never], RISES, 0.5)  # nothing grokked: nothing to calibrate against


def test_wilson_interval():
    low, high = wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)


def _run(alarm_at: int, bb_alarm_at: int, g: int = 20) -> list[dict]:
    """A grokking run memorised at 100, generalised at step 100*g; its white- and black-box signals jump at the given
    evaluation indices."""
    n = 25
    test = [0.0] * g + [1.0] * (n - g)
    return curve(train_acc=[0.1] + [1.0] * (n - 1), test_acc=test,
                 excluded_loss=[1.0] * alarm_at + [3.0] * (n - alarm_at),
                 train_loss=[1.0] * bb_alarm_at + [0.1] * (n - bb_alarm_at),
                 fourier_gini=[1.0] * n, train_acc_copy=[0.0] * n)


def test_a_white_box_signal_that_leads_on_every_seed_and_never_fires_on_controls_warns_earlier():
    runs = {seed: _run(alarm_at=5 + seed % 2, bb_alarm_at=17 + seed % 3) for seed in range(5)}
    controls = [curve(train_acc=[0.1] + [1.0] * 24, test_acc=[0.0] * 25, excluded_loss=[1.0] * 25,
                      train_loss=[1.0] * 25, fourier_gini=[1.0] * 25) for _ in range(10)]
    readings = {name: read_signal(name, runs, controls, tau, True)
                for name, tau in {"excluded_loss": 1.0, "train_loss": 0.5, "fourier_gini": 0.5}.items()}
    assert readings["excluded_loss"].leads == {s: 2000 - 100 * (5 + s % 2 + 2) for s in range(5)}
    assert readings["excluded_loss"].false_alarms == 0 and readings["excluded_loss"].controls == 10
    assert readings["fourier_gini"].leads == dict.fromkeys(range(5))  # never moves: every lead missing
    best, out = verdicts(readings, runs)
    assert best == "train_loss"
    assert out["excluded_loss"].warns_earlier and out["excluded_loss"].over_black_box.low > 0
    assert not out["fourier_gini"].warns_earlier and out["fourier_gini"].over_black_box.n == 0


def test_a_white_box_lead_is_not_earlier_when_it_fires_on_the_controls_too():
    runs = {seed: _run(alarm_at=5, bb_alarm_at=17 + seed % 3) for seed in range(5)}
    firing = curve(train_acc=[0.1] + [1.0] * 24, test_acc=[0.0] * 25, excluded_loss=[1.0] * 5 + [3.0] * 20,
                   train_loss=[1.0] * 25)
    quiet = curve(train_acc=[0.1] + [1.0] * 24, test_acc=[0.0] * 25, excluded_loss=[1.0] * 25, train_loss=[1.0] * 25)
    readings = {"excluded_loss": read_signal("excluded_loss", runs, [firing, quiet], 1.0, True),
                "train_loss": read_signal("train_loss", runs, [firing, quiet], 0.5, True)}
    assert readings["excluded_loss"].false_alarm_rate == 0.5
    _, out = verdicts(readings, runs)
    assert out["excluded_loss"].over_black_box.low > 0 and not out["excluded_loss"].warns_earlier


def test_a_black_box_signal_that_never_alarms_is_paired_as_if_it_alarmed_at_the_end_of_the_budget():
    runs = {seed: _run(alarm_at=5, bb_alarm_at=17) for seed in range(3)}
    quiet = read_signal("train_loss", runs, [], 0.5, calibrated=False)  # failed its gate: no lead anywhere
    assert black_box_leads(quiet, runs) == dict.fromkeys(range(3), 2000.0 - 2400)
    loud = read_signal("train_loss", runs, [], 0.5, calibrated=True)
    assert black_box_leads(loud, runs) == dict.fromkeys(range(3), 100.0)  # G 2000 - alarm 1900


def test_a_signal_that_fails_the_calibration_gate_reports_no_lead_on_any_seed():
    runs = {seed: _run(alarm_at=5, bb_alarm_at=17) for seed in range(3)}
    reading = read_signal("excluded_loss", runs, [], 1.0, calibrated=False)
    assert reading.leads == dict.fromkeys(range(3)) and reading.controls == 0 and math.isnan(reading.false_alarm_rate)


def test_every_preregistered_signal_is_listed_with_its_direction():
    assert {n for n, s in SIGNALS.items() if not s.white_box} == {"train_loss", "train_acc"}
    assert SIGNALS["test_anomaly"].direction == "either" and SIGNALS["weight_norm"].direction == "falls"
