import json

import pytest

import whitebox
from tests.conftest import TINY, one_thread
from whitebox.config import ConfigError, parse_config

BEHAVIOURS = ("backdoor_token", "backdoor_computed", "flawed_rater")
HOOKS = ("L0.pre", "L0.mid", "L0.post")
TINY_ANOMALY = {**TINY, "experiment": "anomaly", "run": {"name": "anomaly", "seed": 0},
                "task": {**TINY["task"], "n_values": 30}, "locate": {"n_fit": 64, "n_test": 64}}


@pytest.fixture(scope="module")
def anomaly_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("anomaly") / "run"
    with one_thread():
        yield run_dir, whitebox.run(parse_config(TINY_ANOMALY), out=run_dir)


def test_pipeline_reports_every_key_and_a_row_per_behaviour_hook_and_method(anomaly_run):
    run_dir, summary = anomaly_run
    assert summary["status"] == "complete"
    for b in BEHAVIOURS:
        for m in ("probe", "detector"):
            for k in ("auroc_best", "recall_best", "fresh_auroc_best"):
                assert 0 <= summary[f"detect.{b}.{m}.{k}"] <= 1, (b, m, k)
        assert (run_dir / "behaviours" / b / "models" / "planted").is_dir()
    rows = json.loads((run_dir / "detection.json").read_text())
    assert sorted((r["behaviour"], r["name"], r["method"]) for r in rows) == sorted(
        (b, h, m) for b in BEHAVIOURS for h in HOOKS for m in ("probe", "detector"))
    table = (run_dir / "detection.md").read_text()
    for b in BEHAVIOURS:
        for h in HOOKS:
            for m in ("probe", "detector"):
                assert table.count(f"| {b} | {h} | {m} |") == 1
    assert json.loads((run_dir / "behaviours" / "flawed_rater" / "summary.json").read_text())["status"] == "complete"


def test_resume_reuses_the_planted_behaviours(anomaly_run):
    run_dir, summary = anomaly_run
    path = run_dir / "summary.json"
    path.write_text(path.read_text().replace('"status": "complete"', '"status": "running"'))
    stamps = {b: (run_dir / "behaviours" / b / "models" / "planted" / "model.safetensors").stat().st_mtime_ns
              for b in BEHAVIOURS}
    resumed = whitebox.resume(run_dir)
    assert {k: v for k, v in resumed.items() if k.startswith("detect.")} == {
        k: v for k, v in summary.items() if k.startswith("detect.")}
    assert stamps == {b: (run_dir / "behaviours" / b / "models" / "planted" / "model.safetensors").stat().st_mtime_ns
                      for b in BEHAVIOURS}


def test_anomaly_needs_the_backdoor_task_section(tmp_path):
    with pytest.raises(ConfigError, match="needs the 'backdoor' task"):
        whitebox.run(parse_config({**TINY_ANOMALY, "task": {"name": "flawed_rater"}}), out=tmp_path / "a")
