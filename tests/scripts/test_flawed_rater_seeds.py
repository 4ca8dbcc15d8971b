"""Flawed rater across seeds: each seed recorded and read back; the pre-registered endpoints from the summaries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.experiments.test_flawed_rater import TINY_RATER
from tests.scripts.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import flawed_rater_seeds as script  # noqa: E402


def summary(deceive: dict[str, float], fix: dict[str, float], sig: float, control: float) -> dict[str, float]:
    out = {f"deceive.{d}.lie_rate": v for d, v in deceive.items()}
    out |= {f"deceive.{d}.blind_honest_acc": 1 - v for d, v in deceive.items()}
    for key, v in fix.items():
        out[f"fix.{key}.lie_rate"] = v
        out[f"fix.{key}.blind_honest_acc"] = 1 - v
        for x in script.SIGNATURES:
            out[f"fix.{key}.{x}"] = sig
    for f in ("sft", "es"):
        for x in script.SIGNATURES:
            out[f"control.{f}.{x}"] = control
    return out


def test_endpoints_pair_by_seed_and_read_only_seeds_that_learned_the_lie():
    summaries = {s: summary({"rl": 1.0 if s else 0.01, "es": 0.9}, {"sft.rl": 0.0, "es.rl": 0.9 + 0.01 * s,
                                                                    "sft.es": 0.0, "es.es": 0.8 - 0.01 * s},
                            sig=0.7 + 0.01 * s, control=0.5) for s in range(5)}
    out = script.endpoints(summaries, ["rl", "es"], ["sft", "es"])
    assert out["E1"]["rl"]["learned_on"] == [1, 2, 3, 4] and out["E1"]["es"]["learned_on"] == [0, 1, 2, 3, 4]
    assert out["E2"]["after"]["es.rl"]["n"] == 4  # seed 0's rl never lied: its fix is not read
    assert out["E2"]["es-sft"]["n"] == 9 and out["E2"]["es-sft"]["verdict"].startswith("gradient fixes remove more")
    assert out["E3"]["sft.es.detector_auroc_best"]["mean"] == pytest.approx(0.22)
    assert out["E3"]["sft.es.detector_auroc_best"]["verdict"] == "the fixed model keeps a signature beyond the fix's own drift"
    assert out["per_seed"][3]["fix.es.rl"] == {"lie_rate": pytest.approx(0.93), "blind_honest_acc": pytest.approx(0.07)}
    assert "| fix.es.rl | 0.900 / 0.100 | 0.910 / 0.090 |" in script.markdown(out)
    same = {s: summary({"rl": 1.0, "es": 1.0}, {"sft.rl": 0.0, "es.rl": 0.01 * (s % 2), "sft.es": 0.0, "es.es": 0.0},
                       sig=0.5 + 0.01 * (s % 3 - 1), control=0.5) for s in range(5)}
    out = script.endpoints(same, ["rl", "es"], ["sft", "es"])
    assert out["E2"]["es-sft"]["verdict"] == "no difference"
    assert out["E3"]["es.rl.knows_says_auroc_best"]["verdict"] == "no signature beyond drift"
    assert "no difference" in script.markdown(out)


def test_each_seed_is_recorded_with_every_cell_and_read_back(tmp_path):
    config = tmp_path / "rater.yaml"
    config.write_text(yaml.safe_dump(TINY_RATER))
    cmd = [sys.executable, str(ROOT / "scripts" / "flawed_rater_seeds.py"), "--config", str(config), "--seeds", "3",
           "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "records"), "--report", str(tmp_path / "rep")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, env={**__import__("os").environ,
                                                                                            "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "records" / "s3.json").read_text())
    assert record["config"]["run"]["seed"] == 3 and record["config"]["deception"]["control"] is True
    assert {"deceive/rl", "deceive/es", "fix/sft-rl", "control/es"} <= set(record["curves"])
    analysis = json.loads((tmp_path / "rep" / "analysis.json").read_text())
    lie = record["summary"]["deceive.rl.lie_rate"]
    assert analysis["E1"]["rl"]["lie_rate"]["mean"] == pytest.approx(lie)
    assert analysis["E1"]["rl"]["learned_on"] == ([3] if lie >= 0.5 else [])
    (tmp_path / "runs").rename(tmp_path / "gone")  # a fresh machine: only the record is left
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0 and not (tmp_path / "runs" / "s3").exists()  # read back, not run
    assert json.loads((tmp_path / "rep" / "analysis.json").read_text()) == analysis
