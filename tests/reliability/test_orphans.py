"""A `--workers` parent killed with SIGKILL: its workers must not go on running its cells."""

from __future__ import annotations

import json
import os

from tests.reliability.jobs import LABELS, alive, gone, grid_config, training_workers, whitebox_process
from whitebox.runtime.locks import writing


def test_a_killed_parent_leaves_no_worker_running(tmp_path, figures):
    """SIGKILL of the `--workers 2` parent: both workers notice, checkpoint and exit within seconds, releasing
    their cell locks; the dead parent's run.lock is taken over by the next writer."""
    run_dir = tmp_path / "grid"
    parent = whitebox_process("run", str(grid_config(tmp_path)), "--out", str(run_dir), "--workers", "2", cwd=tmp_path)
    try:
        pids = training_workers(run_dir, parent)
    finally:
        parent.kill()
        parent.wait()
    assert gone(pids, 60), [pid for pid in pids if alive(pid)]
    assert not list(run_dir.glob("cells/*.lock"))
    for label in LABELS:
        assert "SIGTERM: finishing this step" in (run_dir / "cells" / f"{label}.log").read_text()
    assert json.loads((run_dir / "run.lock").read_text())["pid"] == parent.pid  # stale: its owner is dead
    with writing(run_dir):  # what --resume does first
        assert json.loads((run_dir / "run.lock").read_text())["pid"] == os.getpid()
    assert not (run_dir / "run.lock").exists()
    figures(trials=1, orphans=sum(alive(pid) for pid in pids))
