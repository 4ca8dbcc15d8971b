import json

import pytest

import whitebox
from tests.conftest import TINY, one_thread
from whitebox.config import ConfigError, parse_config

PLANTED = ("backdoor_token", "backdoor_computed", "flawed_rater")
BEHAVIOURS = (*PLANTED, "flawed_rater_lie")
HOOKS = ("L0.pre", "L0.mid", "L0.post")
TINY_ANOMALY = {**TINY, "experiment": "anomaly", "run": {"name": "anomaly", "seed": 0},
                "task": {**TINY["task"], "n_values": 30}, "locate": {"n_fit": 64, "n_test": 64},
                "deception": {"deceive_budget": 40000, "eval_points": 2}}


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
            for k in ("auroc_best", "recall_best", "baseline_auroc_best"):
                assert 0 <= summary[f"detect.{b}.{m}.{k}"] <= 1, (b, m, k)
    for b in PLANTED:
        assert (run_dir / "behaviours" / b / "models" / "planted").is_dir()
    for name in ("deceived", "control"):
        assert (run_dir / "behaviours" / "flawed_rater_lie" / name / "result.json").is_file()
        for k in ("lie_rate", "honest_acc", "blind_honest_acc"):
            assert 0 <= summary[f"detect.flawed_rater_lie.{name}.{k}"] <= 1
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
    weights = [run_dir / "behaviours" / b / "models" / "planted" / "model.safetensors" for b in PLANTED] + [
        run_dir / "behaviours" / "flawed_rater_lie" / n / "model" / "model.safetensors" for n in ("deceived", "control")]
    stamps = [w.stat().st_mtime_ns for w in weights]
    resumed = whitebox.resume(run_dir)
    assert {k: v for k, v in resumed.items() if k.startswith("detect.")} == {
        k: v for k, v in summary.items() if k.startswith("detect.")}
    assert stamps == [w.stat().st_mtime_ns for w in weights]


def test_anomaly_needs_the_backdoor_task_section(tmp_path):
    with pytest.raises(ConfigError, match="needs the 'backdoor' task"):
        whitebox.run(parse_config({**TINY_ANOMALY, "task": {"name": "flawed_rater"}}), out=tmp_path / "a")
