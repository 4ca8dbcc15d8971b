"""The pre-registered grokking analysis from records: thresholds fixed on calibration runs first, then applied unchanged."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.scripts.conftest import ROOT
from whitebox.config import config_to_dict, load_config
from whitebox.grid.records import FORMAT, record_path, sha256_json
from whitebox.runner import find_experiment

ARMS = {"nanda": [], "wd0": ["training.weight_decay=0"], "frac": ["task.train_fraction=0.15"]}
N = 60  # evaluations, every 100 steps


def evals(g: int | None, lead: int, bump: float = 0.0) -> list[dict]:
    """Memorised at 100; test accuracy jumps at evaluation g (never when None); excluded loss rises `lead`
    evaluations before g and training loss 2 evaluations before it; a control's excluded loss bumps by `bump`."""
    out = []
    for i in range(N):
        grok = g is not None and i >= g
        rising = g is not None and i >= g - lead
        out.append({"step": 100 * i, "eval/train_acc": 0.5 if i == 0 else 1.0, "eval/test_acc": 1.0 if grok else 0.02,
                    "eval/test_loss": 0.01 if grok else 9.0, "eval/restricted_loss": 4.0,
                    "eval/excluded_loss": 3.0 if rising else (1.0 + bump if 10 <= i < 14 else 1.0),
                    "eval/train_loss": 0.001 if g is not None and i >= g - 2 else 0.01,
                    "eval/restricted_loss_train": 4.0, "eval/fourier_key_share": 0.2, "eval/fourier_gini": 0.1,
                    "eval/weight_norm": 50.0, "eval/test_anomaly": 1.0,
                    **{f"eval/key_freq_{k}": float(k) for k in range(1, 6)}})
    return out


def record(results, arm: str, seed: int, curve: list[dict]) -> None:
    cfg = load_config(ROOT / "configs" / "grokking_nanda.yaml",
                      [*ARMS[arm], f"run.seed={seed}", f"run.name={arm}-s{seed}", "tracking.wandb_mode=disabled"])
    body = {"format": FORMAT, "cell": f"{arm}-s{seed}",
            "config": config_to_dict(cfg, find_experiment("grokking").sections),
            "summary": {}, "curves": {"plant": curve}, "env": {}}
    path = record_path(results, f"{arm}-s{seed}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**body, "sha256": sha256_json(body)}))


def grokking_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "grokking_report.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def calibration(tmp_path):
    results = tmp_path / "records"
    for seed in (100, 101):
        record(results, "nanda", seed, evals(30, lead=8))
        record(results, "wd0", seed, evals(None, 0, bump=0.4))
        record(results, "frac", seed, evals(None, 0, bump=0.2))
    return results


def test_calibration_fixes_thresholds_from_the_controls_and_never_replaces_them(calibration):
    proc = grokking_report("calibrate", "--results", str(calibration))
    assert proc.returncode == 0, proc.stderr[-2000:]
    thresholds = json.loads((calibration / "thresholds.json").read_text())
    excluded = thresholds["signals"]["excluded_loss"]
    assert excluded["tau"] == pytest.approx(1.25 * 0.4) and excluded["calibrated"]
    assert excluded["calibration_leads"] == {"nanda-s100": 600, "nanda-s101": 600}  # alarm at eval 24, G at 30
    assert not thresholds["signals"]["train_loss"]["calibrated"]  # alarms at G itself: no warning before it
    assert not thresholds["signals"]["weight_norm"]["calibrated"]  # never moves
    assert grokking_report("calibrate", "--results", str(calibration)).returncode == 0  # the same thresholds again
    record(calibration, "wd0", 100, evals(None, 0, bump=3.0))
    proc = grokking_report("calibrate", "--results", str(calibration))
    assert proc.returncode != 0 and "holds other thresholds" in proc.stderr and "Traceback" not in proc.stderr


def test_calibration_refuses_until_every_calibration_run_is_recorded(calibration):
    (calibration / "frac-s101.json").unlink()
    proc = grokking_report("calibrate", "--results", str(calibration))
    assert proc.returncode != 0 and "frac-s101" in proc.stderr and not (calibration / "thresholds.json").exists()


def test_the_report_applies_the_thresholds_unchanged_and_lists_what_is_missing(calibration):
    proc = grokking_report("report", "--results", str(calibration))
    assert proc.returncode != 0 and "run `calibrate` first" in proc.stderr
    assert grokking_report("calibrate", "--results", str(calibration)).returncode == 0
    for seed in (0, 1, 2, 3, 4):
        record(calibration, "nanda", seed, evals(30 + seed, lead=8 + seed % 2))
        record(calibration, "wd0", seed, evals(None, 0, bump=0.3))
    record(calibration, "nanda", 9, evals(32, lead=8))
    proc = grokking_report("report", "--results", str(calibration))
    assert proc.returncode == 0, proc.stderr[-2000:]
    analysis = json.loads((calibration / "analysis.json").read_text())
    assert analysis["missing"] == [f"frac-s{s}" for s in range(5)]
    excluded = analysis["signals"]["excluded_loss"]
    assert excluded["leads"] == {str(s): 100 * (8 + s % 2 - 2) for s in range(5)}
    assert excluded["false_alarms"] == 0 and excluded["controls"] == 5  # bump 0.3 stays below tau 0.5
    assert analysis["signals"]["train_loss"]["leads"] == dict.fromkeys(map(str, range(5)))  # failed its gate
    # neither black-box signal warns, so each is paired as if it alarmed at the budget's last step: excluded loss leads
    assert analysis["best_black_box"] == "train_loss" and analysis["warns_earlier"] == ["excluded_loss"]
    assert excluded["over_black_box"]["mean"] == pytest.approx(sum(100 * (8 + s % 2 - 2) - (3000 + 100 * s - 5900)
                                                                   for s in range(5)) / 5)
    assert analysis["per_seed"]["0"]["memorisation"] == 100 and analysis["per_seed"]["0"]["generalisation"] == 3000
    assert analysis["held_out"]["generalisation"] == 3200 and analysis["held_out"]["inside"] is True
    text = (calibration / "report.md").read_text()
    assert "Not recorded yet** (5)" in text and "warn materially earlier: excluded_loss" in text
    assert (calibration / "reproduction.png").stat().st_size > 10_000 and (calibration / "signals.png").stat().st_size > 10_000
