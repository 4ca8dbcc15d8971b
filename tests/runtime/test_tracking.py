import json
import time

import pytest

import whitebox
from whitebox.runtime.tracking import Tracker


def test_wandb_offline_writes_a_syncable_run_under_the_run_directory(tiny, tmp_path):
    whitebox.run(tiny, ["tracking.wandb_mode=offline"], out=tmp_path / "r")
    runs = list((tmp_path / "r" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    env = json.loads((tmp_path / "r" / "env.json").read_text())
    assert runs[0].name.endswith(env["wandb_id"])
    files = list(runs[0].glob("run-*.wandb"))
    assert len(files) == 1
    # wandb-core (its own process) may still be flushing under load; the records must arrive, late or not
    deadline = time.monotonic() + 60
    while files[0].stat().st_size <= 1000 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert files[0].stat().st_size > 1000


def test_wandb_failing_to_start_keeps_local_records(tiny, tmp_path, monkeypatch):
    import wandb

    def broken(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(wandb, "init", broken)
    with pytest.warns(UserWarning, match="W&B could not start"):
        summary = whitebox.run(tiny, ["tracking.wandb_mode=online"], out=tmp_path / "r")
    assert summary["status"] == "complete"
    assert sum(1 for _ in open(tmp_path / "r" / "metrics.jsonl")) > 10


class _FlakyRun:
    def __init__(self):
        self.calls = 0

    def define_metric(self, *args, **kwargs):
        pass

    def log(self, data):
        self.calls += 1
        raise ConnectionError("dropped")


def test_wandb_failing_mid_run_warns_once_and_keeps_logging_locally(tiny, tmp_path):
    tracker = Tracker(tmp_path, tiny)
    tracker._wandb = flaky = _FlakyRun()
    with pytest.warns(UserWarning, match="W&B stopped working") as caught:
        for step in range(3):
            tracker.log("plant", step, {"loss": 1.0})
    assert len(caught) == 1 and flaky.calls == 1
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3


def test_rewind_drops_later_records_of_that_stage_and_cut_lines(tiny, tmp_path):
    tracker = Tracker(tmp_path, tiny)
    for step in range(5):
        tracker.log("plant", step, {"x": step})
        tracker.log("treat", step, {"x": step})
    with open(tracker.metrics_path, "a") as f:
        f.write('{"stage": "plant", "st')
    tracker.rewind("plant", 2)
    records = [json.loads(line) for line in tracker.metrics_path.read_text().splitlines()]
    assert [r["step"] for r in records if r["stage"] == "plant"] == [0, 1, 2]
    assert [r["step"] for r in records if r["stage"] == "treat"] == [0, 1, 2, 3, 4]


def test_summary_merges_flat_keys(tiny, tmp_path):
    tracker = Tracker(tmp_path, tiny)
    tracker.update_summary({"plant.asr": 1.0})
    assert tracker.update_summary({"locate.x": 2}) == {"plant.asr": 1.0, "locate.x": 2}
    assert json.loads((tmp_path / "summary.json").read_text()) == {"plant.asr": 1.0, "locate.x": 2}
