import json
import os
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


@pytest.fixture
def silent_server(monkeypatch):
    """A W&B server that accepts connections and never answers (a network that swallows packets), and a key."""
    import socket
    import threading

    from whitebox.runtime import tracking

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.delenv("WANDB_INIT_TIMEOUT", raising=False)
    monkeypatch.delenv(tracking.ONLINE_FAILED, raising=False)  # restored (absent) after the test
    monkeypatch.setattr(tracking, "WANDB_INIT_SECONDS", 2.0)
    yield held
    server.close()


def test_online_wandb_that_never_answers_costs_one_bounded_wait_then_offline(tiny, tmp_path, silent_server):
    """No answer from the server: the first start waits init_timeout (not wandb's 90 s), warns once and logs
    offline; later starts in this process (a resume, the next cell) and its workers go offline without waiting."""
    from whitebox.runtime import tracking

    started = time.monotonic()
    with pytest.warns(UserWarning, match="W&B online could not start .*logging offline"):
        first = whitebox.run(tiny, ["tracking.wandb_mode=online"], out=tmp_path / "a")
    waited = time.monotonic() - started
    assert first["status"] == "complete" and waited < 60  # 2 s + wandb's 10 s grace + the run; unbounded: 90 s+
    assert os.environ[tracking.ONLINE_FAILED]  # the reason, for this process's later starts and its workers
    tried = len(silent_server)
    with pytest.warns(UserWarning, match="W&B online could not start .*logging offline"):
        second = whitebox.run(tiny, ["tracking.wandb_mode=online"], out=tmp_path / "b")
    assert second["status"] == "complete" and len(silent_server) == tried  # not even a connection this time
    assert list((tmp_path / "b" / "wandb").glob("offline-run-*"))
