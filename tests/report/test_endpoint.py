import math

import pytest

from whitebox.report.endpoint import aware_row, endpoint, endpoint_lines
from whitebox.runtime.rundir import treat_key


def _cells(planted, aware, row="sft.absent", kind="computed"):
    return {(kind, s): {treat_key(row, kind, "revival_steps"): a, treat_key(aware_row(row), kind, "revival_steps"): b}
            for s, (a, b) in enumerate(zip(planted, aware))}


def test_log_r_is_paired_by_seed_with_the_plus_one():
    cells = _cells([9, 19, 0], [9, 9, 1])
    e = endpoint(cells, "computed", ["sft.absent"])["sft.absent"]
    assert e["log_r"] == pytest.approx([0.0, math.log(2.0), math.log(0.5)])
    assert e["ratio"].n == 3 and e["ratio"].mean == pytest.approx(1.0)


def test_verdicts_and_counts_follow_the_intervals():
    removed = _cells([40, 42, 39, 41, 40, 38, 43, 40, 41, 39], [41, 40, 40, 42, 39, 40, 41, 41, 40, 40])
    suppressed = _cells([10, 12, 9, 11, 10, 8, 13, 10, 11, 9], [41, 40, 40, 42, 39, 40, 41, 41, 40, 40])
    e = endpoint(removed, "computed", ["sft.absent"])["sft.absent"]
    assert e["verdict"] == "removed" and e["per_seed"] == {"removed": 10, "suppressed": 0, "at_once": 0} and e["tost_p_holm"] < 0.05
    e = endpoint(suppressed, "computed", ["sft.absent"])["sft.absent"]
    assert e["verdict"] == "suppressed" and e["per_seed"]["suppressed"] == 10
    lines = endpoint_lines(suppressed, "computed", ["sft.absent"])
    assert any(line.startswith("| sft / absent | 10 | 0.27 | 0.25 to 0.30 |") and "suppressed" in line for line in lines)


def test_no_yardstick_no_endpoint():
    cells = {("token", 0): {treat_key("sft.absent", "token", "revival_steps"): 10}}
    assert endpoint(cells, "token", ["sft.absent"]) == {} and endpoint_lines(cells, "token", ["sft.absent"]) == []


def test_the_endpoint_figure_shows_every_regime_with_its_verdict(tmp_path):
    from whitebox.report.endpoint import plot_endpoint

    cells = _cells([10, 12, 9], [41, 40, 40])
    for (kind, s), summary in _cells([40, 41, 39], [41, 40, 40], row="es.absent").items():
        cells[(kind, s)].update(summary)
    out = plot_endpoint(cells, "computed", ["sft.absent", "es.absent"], tmp_path / "endpoint.png")
    assert out is not None and out.stat().st_size > 10_000
    none = {("token", 0): {treat_key("sft.absent", "token", "revival_steps"): 10}}
    assert plot_endpoint(none, "token", ["sft.absent"], tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()


def test_the_table_shows_the_asr_after_treatment_and_the_seeds_revived_at_once():
    cells = _cells([0, 0, 3], [40, 41, 39])
    for s, asr in enumerate([1.0, 0.9, 0.8]):
        cells[("computed", s)][treat_key("sft.absent", "computed", "asr")] = asr
    e = endpoint(cells, "computed", ["sft.absent"])["sft.absent"]
    assert e["per_seed"]["at_once"] == 2 and e["asr"][0] == pytest.approx(0.9)
    lines = endpoint_lines(cells, "computed", ["sft.absent"])
    row = next(line for line in lines if line.startswith("| sft / absent"))
    assert row.endswith("| 0.900 ± 0.248 | 2 of 3 |")
    assert lines[-1] == "Verdicts (endpoint, computed): suppressed: sft / absent."


def test_a_noise_control_is_measured_against_its_regimes_trigger_aware_yardstick():
    from whitebox.report.endpoint import noise_yardstick

    assert noise_yardstick("es_plain_noise.absent") == "es_plain_aware.absent"
    cells = _cells([10, 12, 9], [41, 40, 40])
    for (kind, s), summary in _cells([41, 40, 40], [41, 40, 40]).items():
        cells[(kind, s)][treat_key("sft_noise.absent", kind, "revival_steps")] = summary[treat_key("sft.absent", kind, "revival_steps")]
    e = endpoint(cells, "computed", ["sft_noise.absent"], noise_yardstick)["sft_noise.absent"]
    assert e["log_r"] == pytest.approx([0.0, 0.0, 0.0])
