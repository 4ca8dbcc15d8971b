import pytest

from whitebox.report.reading import leak_fraction, leak_lines, loss_lines, reading_lines
from whitebox.runtime.rundir import treat_key

KIND = "computed_leak0p1"


def _cells(steps: dict[str, tuple[list[int], list[int]]], leak: dict[str, list[float]], planted_leak=0.1):
    """Seeds x rows: planted and trigger-aware revival steps per regime, the leak after treatment per regime."""
    n = len(next(iter(steps.values()))[0])
    cells = {}
    for s in range(n):
        summary = {"plant.leak": planted_leak}
        for regime, (planted, aware) in steps.items():
            summary[treat_key(f"{regime}.absent", KIND, "revival_steps")] = planted[s]
            summary[treat_key(f"{regime}_aware.absent", KIND, "revival_steps")] = aware[s]
            summary[treat_key(f"{regime}.absent", KIND, "leak")] = leak[regime][s]
        cells[(KIND, s)] = summary
    return cells


SAME = ([40, 42, 39, 41, 40, 38, 43, 40, 41, 39], [41, 40, 40, 42, 39, 40, 41, 41, 40, 40])  # removed
FAST = ([0, 1, 0, 0, 2, 0, 1, 0, 0, 1], [41, 40, 40, 42, 39, 40, 41, 41, 40, 40])  # suppressed
ROWS = ["sft.absent", "es.absent"]


def test_the_leak_is_read_per_seed_against_its_planted_value():
    cells = _cells({"sft": SAME, "es": FAST}, {"sft": [0.001] * 10, "es": [0.08, 0.09] * 5})
    assert leak_fraction(cells, KIND, "sft.absent").high < 0.25
    assert leak_fraction(cells, KIND, "es.absent").mean == pytest.approx(0.85)
    lines = leak_lines(cells, KIND, ROWS)
    assert lines[-2].startswith("| sft / absent | 0.0010 ± 0.0000 | 0.010 |") and lines[-2].endswith("| removed |")
    assert lines[-1].endswith("| left |")
    assert leak_lines(_cells({"sft": SAME}, {"sft": [0.0] * 10}, planted_leak=0.0), KIND, ["sft.absent"]) == []


def test_the_reading_supports_the_claim_only_in_the_pre_registered_pattern():
    support = _cells({"sft": SAME, "es": FAST}, {"sft": [0.001] * 10, "es": [0.08, 0.09] * 5})
    assert "**supports the claim**" in reading_lines(support, KIND, ROWS)[-1]
    against = _cells({"sft": FAST, "es": FAST}, {"sft": [0.001] * 10, "es": [0.08, 0.09] * 5})
    text = reading_lines(against, KIND, ROWS)[-1]
    assert "**counts against the claim**: sft is suppressed" in text and "es is removed" not in text
    es_removes = _cells({"sft": FAST, "es": SAME}, {"sft": [0.001] * 10, "es": [0.001] * 10})
    assert "es is removed while sft is not" in reading_lines(es_removes, KIND, ROWS)[-1]
    leak_left = _cells({"sft": SAME, "es": FAST}, {"sft": [0.09] * 10, "es": [0.09] * 10})
    assert "sft leaves the leak above half" in reading_lines(leak_left, KIND, ROWS)[-1]
    neither = _cells({"sft": SAME, "es": FAST}, {"sft": [0.001] * 10, "es": [0.001] * 10})  # es removed the leak too
    assert "**neither pattern**" in reading_lines(neither, KIND, ROWS)[-1]
    assert reading_lines(_cells({"es": FAST}, {"es": [0.0] * 10}), KIND, ["es.absent"]) == []


def test_revival_loss_is_shown_for_the_planted_model_beside_its_yardstick():
    cells = _cells({"sft": SAME}, {"sft": [0.0] * 10})
    for s, summary in cells.items():
        summary[treat_key("sft.absent", KIND, "triggered_loss_10")] = 0.5
        summary[treat_key("sft_aware.absent", KIND, "triggered_loss_10")] = 2.0
    lines = loss_lines(cells, KIND, ["sft.absent"], [10])
    assert lines[-1] == "| sft / absent | 0.500 ± 0.000 | 2.000 ± 0.000 |"


def test_a_curve_has_flattened_only_when_its_last_quarter_change_is_inside_the_bound():
    from whitebox.report.reading import flat_lines, last_quarter_change

    def curve(values):
        return [{"budget/forward_equivalents": 25 * i, "eval/asr": v} for i, v in enumerate(values)]

    falling = {(KIND, s): {"treat/sft-absent": curve([1.0, 0.9, 0.8, 0.7 - 0.01 * s, 0.5 - 0.02 * s])} for s in range(5)}
    flat = {(KIND, s): {"treat/sft-absent": curve([1.0, 0.5, 0.3, 0.3, 0.3 + 0.001 * s])} for s in range(5)}
    change = last_quarter_change(falling, KIND, "sft.absent", "asr")
    assert change.mean == pytest.approx(-0.22) and change.n == 5  # from 75 (0.7 - 0.01 s) to 100 (0.5 - 0.02 s)
    assert flat_lines(falling, KIND, ["sft.absent"], ("asr",))[-1].endswith("| no |")
    assert flat_lines(flat, KIND, ["sft.absent"], ("asr",))[-1].endswith("| yes |")
    assert flat_lines(flat, KIND, ["es.absent"], ("asr",)) == []


def test_one_seed_gives_no_flattening_reading_and_a_task_without_a_leak_no_leak_column():
    from whitebox.report.reading import flat_lines

    one = {(KIND, 0): {"treat/sft-absent": [{"budget/forward_equivalents": 25 * i, "eval/asr": 1.0 - 0.1 * i} for i in range(5)]}}
    lines = flat_lines(one, KIND, ["sft.absent"])
    assert lines[-3] == "| row | asr change | asr flattened |" and lines[-1] == "| sft / absent | -0.100 | one seed |"
