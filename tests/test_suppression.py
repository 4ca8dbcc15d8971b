import math
import statistics

import pytest
from scipy import stats

import whitebox
from tests.test_treat import SUPPRESSION
from whitebox.config import parse_config
from whitebox.runner import resume
from whitebox.suppression_report import ci95, verdict

GRID = {**SUPPRESSION, "experiment": "suppression", "run": {"name": "grid", "seed": 0},
        "treat": {**SUPPRESSION["treat"], "regimes": ["sft", "zo"], "conditions": ["present"]},
        "grid": {"seeds": [0, 1], "triggers": ["token"]}}


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("grid") / "run"
    return run_dir, whitebox.run(parse_config(GRID), out=run_dir)


def test_ci95_is_the_student_t_half_width():
    values = [1.0, 2.0, 4.0]
    mean, half = ci95(values)
    assert mean == pytest.approx(7 / 3)
    assert half == pytest.approx(stats.t.ppf(0.975, 2) * statistics.stdev(values) / math.sqrt(3))
    assert math.isnan(ci95([1.0])[1]) and math.isnan(ci95([])[0]) and ci95([1.0, math.nan, 3.0])[0] == 2.0


def test_summary_carries_mean_and_ci_over_the_seed_cells(grid):
    run_dir, summary = grid
    cells = [whitebox.artifacts.read_json(run_dir / "cells" / f"token-s{s}" / "summary.json") for s in (0, 1)]
    for key in ("treat.sft.present.token.asr", "treat.zo.present.token.refit_probe_auroc_best",
                "treat.start.token.detector_auroc", "treat.fresh.token.revival_steps", "treat.sft.present.token.revival_steps"):
        mean, half = ci95([c[key] for c in cells])
        assert summary[f"{key}.mean"] == pytest.approx(mean) and summary[f"{key}.n"] == 2
        assert summary[f"{key}.ci95"] == pytest.approx(half, nan_ok=True)
    rel = [c["treat.sft.present.token.circuit_ablation_effect"] / c["treat.start.token.circuit_ablation_effect"] for c in cells]
    assert summary["treat.sft.present.token.circuit_ablation_effect_rel.mean"] == pytest.approx(statistics.fmean(rel))
    assert whitebox.config.load_config(run_dir / "cells" / "token-s1" / "config.yaml").tracking.wandb_group == "grid"


def test_report_has_a_row_per_regime_and_control_with_a_computed_verdict(grid):
    run_dir, summary = grid
    text = (run_dir / "report.md").read_text()
    assert "## Trigger: token" in text and "Verdict criterion" in text
    for row in ("untreated", "fresh", "sft / present", "zo / present"):
        assert f"| {row} |" in text
    agg = {k: v for k, v in summary.items() if isinstance(v, float)}
    sft_line = next(line for line in text.splitlines() if line.startswith("| sft / present |"))
    assert sft_line.rstrip(" |").endswith(verdict(agg, "sft.present", "token"))
    assert (run_dir / "plots" / "treat_token.png").read_bytes()[:4] == b"\x89PNG"


def test_verdict_follows_its_criterion():
    base = {"treat.fresh.k.revival_steps.mean": 100.0}
    row = lambda asr, effect, steps: {**base, "treat.r.k.asr.mean": asr,  # noqa: E731
                                      "treat.r.k.circuit_ablation_effect_rel.mean": effect, "treat.r.k.revival_steps.mean": steps}
    assert verdict(row(0.5, 0.0, 100), "r", "k") == "not suppressed"
    assert verdict(row(0.0, 0.05, 60), "r", "k") == "removed"
    assert verdict(row(0.0, 0.5, 60), "r", "k") == "suppressed"  # the circuit still acts
    assert verdict(row(0.0, 0.05, 10), "r", "k") == "suppressed"  # revives 10x faster than fresh


def test_a_resumed_grid_keeps_finished_cells(grid):
    run_dir, summary = grid
    cell_metrics = run_dir / "cells" / "token-s0" / "metrics.jsonl"
    before = cell_metrics.read_text()
    whitebox.artifacts.write_json(run_dir / "summary.json", {**summary, "status": "running"})
    again = resume(run_dir)
    assert cell_metrics.read_text() == before
    assert again["treat.sft.present.token.asr.mean"] == summary["treat.sft.present.token.asr.mean"]
