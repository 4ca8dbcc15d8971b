"""Signals to a real `whitebox` process: to the `--workers` parent alone, and one while the process is still
importing. The job must stop promptly with exit 130 and one line (a SIGKILLed parent: tests/reliability/test_orphans.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import TINY
from tests.reliability.jobs import LABELS, env, gone, grid_config, stderr_of, training_workers, whitebox_process
from whitebox.grid.workers import _failure
from whitebox.runtime.signals import PARENT


def test_a_signal_to_the_workers_parent_alone_stops_every_worker(tmp_path, figures):
    """SIGTERM to the `--workers 2` parent only (as a scheduler preempting it): passed on, both workers checkpoint
    and exit, the parent exits 130 within seconds with one line, every lock released."""
    signum = signal.SIGTERM
    run_dir = tmp_path / "grid"
    parent = whitebox_process("run", str(grid_config(tmp_path)), "--out", str(run_dir), "--workers", "2", cwd=tmp_path)
    try:
        pids = training_workers(run_dir, parent)
        sent = time.monotonic()
        parent.send_signal(signum)
        code = parent.wait(timeout=150)
        took = time.monotonic() - sent
    finally:
        parent.kill()
    err = stderr_of(tmp_path)
    assert code == 130 and took < 60, (code, took, err[-2000:])
    assert gone(pids, 10)
    lines = [line for line in err.splitlines() if line.startswith("whitebox:")]
    assert lines == [f"whitebox: interrupted; continue with `whitebox run --resume {run_dir} --workers 2`"], err[-2000:]
    assert "Traceback" not in err
    assert not list(run_dir.rglob("*.lock")), list(run_dir.rglob("*.lock"))
    for label in LABELS:
        assert "finishing this step and saving a checkpoint" in (run_dir / "cells" / f"{label}.log").read_text()
    figures(trials=1, signal=signal.Signals(signum).name, seconds_to_stop=round(took, 1), orphans=0)


def test_a_failed_cell_is_named_by_its_own_error_not_an_older_attempts_lines(tmp_path):
    """A worker refused by a cell lock: the parent quotes that refusal, not the progress line an earlier
    attempt (or an orphan) wrote into the same log."""
    log = tmp_path / "cells" / "token-s0.log"
    log.parent.mkdir()
    log.write_text("plant:  40%|####      | 40/100 [00:01<00:01]\n")
    start = log.stat().st_size
    with open(log, "a") as f:
        f.write("whitebox: error: cell token-s0 of grid is being run by process 7 on host (lock x); wait for it\n"
                "plant:  41%|####      | 41/100 [00:01<00:01]\n\nwhitebox: interrupted; continue with `...`\n")
    message = _failure(tmp_path, ("token", 0), 2, start)
    assert message.endswith(": whitebox: error: cell token-s0 of grid is being run by process 7 on host (lock x); "
                            "wait for it")


@pytest.mark.parametrize("delay", [0.2, 1.0])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_while_starting_is_one_line_and_exit_130(tmp_path, delay, signum, figures):
    """Ctrl-C or SIGTERM while whitebox imports pydantic and torch (or has just begun): exit 130, one line, no
    KeyboardInterrupt traceback."""
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    proc = whitebox_process("run", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "run"), cwd=tmp_path)
    time.sleep(delay)
    proc.send_signal(signum)
    code = proc.wait(timeout=120)
    err = stderr_of(tmp_path)
    assert code == 130, (code, err[-2000:])
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert len([line for line in err.splitlines() if line.startswith("whitebox:")]) == 1, err[-2000:]
    figures(trials=1, signal=signal.Signals(signum).name, delay_s=delay, tracebacks=0)


def test_a_worker_whose_parent_is_already_gone_stops_at_once(tmp_path):
    """A worker started by a parent that died before the worker asked to die with it: exit 130 in one line, at once."""
    proc = subprocess.run([sys.executable, "-m", "whitebox", "--version"], cwd=tmp_path, capture_output=True, text=True,
                          env={**env(), PARENT: "1"}, timeout=60)  # pid 1 is not its parent
    assert proc.returncode == 130 and proc.stdout == "", (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.strip().splitlines() == ["whitebox: interrupted (SIGTERM) while starting, before any file was "
                                                "written; run the same command again"]
