"""grid.results: finished cells recorded as small JSON, read back instead of run, and reported from alone."""

from __future__ import annotations

import json
import shutil

import pytest

import whitebox
from tests.conftest import one_thread
from tests.protocol.test_treat import SUPPRESSION
from whitebox.cli.main import main
from whitebox.config import parse_config
from whitebox.runtime.artifacts import ArtifactError
from whitebox.runtime.records import results

GRID = {**SUPPRESSION, "experiment": "suppression", "run": {"name": "recorded", "seed": 0, "lanes": 1},
        "treat": {**SUPPRESSION["treat"], "regimes": ["sft"], "conditions": ["absent"]},
        "revive": {**SUPPRESSION["revive"], "noise_control": False}}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    base = tmp_path_factory.mktemp("recorded")
    cfg = {**GRID, "grid": {"seeds": [0, 1], "triggers": ["token"], "results": str(base / "results")}}
    with one_thread():
        summary = whitebox.run(parse_config(cfg), out=base / "run")
    return base, cfg, summary


def test_every_finished_cell_leaves_a_sealed_record_with_its_summary_and_curves(recorded):
    base, _, _ = recorded
    for seed in (0, 1):
        record = json.loads((base / "results" / f"token-s{seed}.json").read_text())
        cell_summary = json.loads((base / "run" / "cells" / f"token-s{seed}" / "summary.json").read_text())
        assert record["summary"] == cell_summary and record["config"]["run"]["seed"] == seed
        assert [r["budget/forward_equivalents"] for r in record["curves"]["treat/sft-absent"]][0] == 0
        assert record["env"]["versions"]["torch"] and "sha256" in record
    assert (base / "results" / "config.yaml").is_file()


def test_the_report_rebuilt_from_the_records_alone_is_the_runs_report(recorded, tmp_path):
    base, _, _ = recorded
    copy = tmp_path / "results"
    shutil.copytree(base / "results", copy)
    assert main(["report", str(copy)]) == 0
    assert (copy / "report.md").read_text() == (base / "run" / "report.md").read_text()
    (copy / "token-s1.json").unlink()
    assert main(["report", str(copy)]) == 0
    assert "1 of 2 cells finished; missing token-s1" in (copy / "report.md").read_text()


def test_a_fresh_machine_continues_from_the_records_without_running_a_recorded_cell(recorded, tmp_path):
    base, cfg, summary = recorded
    results_dir = tmp_path / "results"
    shutil.copytree(base / "results", results_dir)
    (results_dir / "token-s1.json").unlink()  # one cell still to run
    again = {**cfg, "grid": {**cfg["grid"], "results": str(results_dir)}}
    with one_thread():
        continued = whitebox.run(parse_config(again), out=tmp_path / "run")
    assert not (tmp_path / "run" / "cells" / "token-s0").exists()  # read from its record
    assert (tmp_path / "run" / "cells" / "token-s1" / "summary.json").is_file()
    assert json.dumps(results(continued)) == json.dumps(results(summary))  # the same grid result
    assert (results_dir / "token-s1.json").is_file()


def test_a_record_of_another_config_or_edited_is_refused_naming_why(recorded, tmp_path):
    base, cfg, _ = recorded
    results_dir = tmp_path / "results"
    shutil.copytree(base / "results", results_dir)
    other = {**cfg, "grid": {**cfg["grid"], "results": str(results_dir)}, "treat": {**cfg["treat"], "lr": 5e-3}}
    with pytest.raises(ArtifactError, match=r"token-s0 was run with another config \(treat.lr differ\)"):
        whitebox.run(parse_config(other), out=tmp_path / "other")
    record = json.loads((results_dir / "token-s0.json").read_text())
    record["summary"]["treat.sft.absent.token.asr"] += 0.5
    (results_dir / "token-s0.json").write_text(json.dumps(record))
    with pytest.raises(ArtifactError, match="not an intact record of cell token-s0"):
        whitebox.run(parse_config({**cfg, "grid": {**cfg["grid"], "results": str(results_dir)}}), out=tmp_path / "edited")
