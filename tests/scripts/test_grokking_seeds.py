"""Grokking across seeds: each finished seed is recorded (config, summary, curves) and read back, never re-run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.experiments.test_grokking import TINY_GROK
from tests.scripts.conftest import ROOT


def grokking_seeds(tmp_path, *args: str) -> subprocess.CompletedProcess:
    config = tmp_path / "grok.yaml"
    config.write_text(yaml.safe_dump(TINY_GROK))
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "grokking_seeds.py"), "--config", str(config),
                           "--out", str(tmp_path / "runs"), "--json", str(tmp_path / "seeds.json"), *args],
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("grok_seeds")
    proc = grokking_seeds(tmp_path, "--seeds", "0", "1", "--label", "wd0", "--set", "training.weight_decay=0",
                          "--results", str(tmp_path / "records"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return tmp_path


def test_each_seed_leaves_a_record_of_its_config_summary_and_training_curves(recorded):
    for seed in (0, 1):
        record = json.loads((recorded / "records" / f"wd0-s{seed}.json").read_text())
        assert record["config"]["training"]["weight_decay"] == 0 and record["config"]["run"]["seed"] == seed
        assert [r["step"] for r in record["curves"]["plant"]] == [0, 10, 20, 30, 40]
        assert all("eval/restricted_loss_train" in r for r in record["curves"]["plant"])
        run_summary = json.loads((recorded / "runs" / f"wd0-s{seed}" / "summary.json").read_text())
        assert record["summary"]["grok.test_acc"] == run_summary["grok.test_acc"]
        row = json.loads((recorded / "seeds.json").read_text())["runs"][str(seed)]
        assert row["final_test_acc"] == run_summary["grok.test_acc"]


def test_a_recorded_seed_is_read_back_on_a_fresh_machine_with_the_same_table(recorded, tmp_path):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copytree(recorded / "records", fresh / "records")  # runs/ is gone, the committed records are not
    proc = grokking_seeds(fresh, "--seeds", "0", "1", "--label", "wd0", "--set", "training.weight_decay=0",
                          "--results", str(fresh / "records"), "--plot", str(fresh / "seeds.png"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (fresh / "runs").exists()  # nothing was run again
    before, after = (json.loads((d / "seeds.json").read_text()) for d in (recorded, fresh))
    assert after["runs"] == before["runs"]
    assert (fresh / "seeds.png").stat().st_size > 10_000  # drawn from the records' curves


def test_a_record_made_with_another_config_is_refused_not_reused(recorded, tmp_path):
    records = tmp_path / "records"
    shutil.copytree(recorded / "records", records)
    proc = grokking_seeds(tmp_path, "--seeds", "0", "--label", "wd0", "--results", str(records))  # weight decay 1.0
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "run with another config" in proc.stderr and "training.weight_decay" in proc.stderr


def test_commit_without_results_is_refused(tmp_path):
    proc = grokking_seeds(tmp_path, "--seeds", "0", "--commit")
    assert proc.returncode == 2 and "--results" in proc.stderr

