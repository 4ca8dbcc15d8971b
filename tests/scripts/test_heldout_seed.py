"""The held-out seed check: a seed never reported, read against the reported records' intervals, same config only."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil

import pytest

from tests.scripts.conftest import ROOT
from whitebox.runtime.artifacts import sha256_json

RECORDS = ROOT / "docs" / "results" / "data" / "headline"


def heldout():
    spec = importlib.util.spec_from_file_location("heldout_seed", ROOT / "scripts" / "heldout_seed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def dirs(tmp_path):
    reported, held_out = tmp_path / "reported", tmp_path / "held_out"
    reported.mkdir(), held_out.mkdir()
    for seed in (0, 1, 2):
        shutil.copy(RECORDS / f"computed_leak0p1-s{seed}.json", reported)
    shutil.copy(RECORDS / "computed_leak0p1-s3.json", held_out)
    return reported, held_out


def test_the_held_out_seed_is_read_against_the_interval_and_the_prediction_interval(dirs, capsys):
    reported, held_out = dirs
    assert heldout().main([str(reported), str(held_out)]) == 0
    check = json.loads((held_out / "check.json").read_text())
    sft = check["rows"]["computed_leak0p1/sft.absent/s3"]
    summary = json.loads((held_out / "computed_leak0p1-s3.json").read_text())["summary"]
    steps = [summary[f"treat.{row}.computed_leak0p1.revival_steps"] for row in ("sft.absent", "sft_aware.absent")]
    assert sft["R"] == pytest.approx((steps[0] + 1) / (steps[1] + 1))
    low, high = sft["pi95_R"]
    assert sft["in_pi"] == (low <= sft["R"] <= high) and low < sft["ci95_R"][0] and sft["ci95_R"][1] < high
    assert check["n"] == 12 and 0 <= check["in_ci"] <= check["in_pi"] <= 12  # 6 regimes and their novel rows
    assert math.isclose(sft["leak_share"], summary["treat.sft.absent.computed_leak0p1.leak"] / summary["plant.leak"])
    assert "inside the 95% prediction interval" in capsys.readouterr().out


def test_a_reported_seed_or_another_config_is_refused(dirs):
    reported, held_out = dirs
    shutil.copy(reported / "computed_leak0p1-s0.json", held_out)
    with pytest.raises(SystemExit, match=r"seeds \[0\] are in both"):
        heldout().main([str(reported), str(held_out)])
    (held_out / "computed_leak0p1-s0.json").unlink()
    path = held_out / "computed_leak0p1-s3.json"
    data = json.loads(path.read_text())
    data["config"]["revive"]["steps"] = 400
    body = {k: v for k, v in data.items() if k != "sha256"}
    path.write_text(json.dumps({**body, "sha256": sha256_json(body)}))
    with pytest.raises(SystemExit, match="revive.steps"):
        heldout().main([str(reported), str(held_out)])


def test_a_damaged_record_is_one_clear_error(dirs):
    reported, held_out = dirs
    path = held_out / "computed_leak0p1-s3.json"
    path.write_text(path.read_text().replace('"format": 1', '"format": 2'))
    with pytest.raises(SystemExit, match="not an intact record of cell computed_leak0p1-s3"):
        heldout().main([str(reported), str(held_out)])
    assert not (held_out / "check.json").exists()
