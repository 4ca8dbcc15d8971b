"""Real `whitebox` processes for the signal tests: a tiny grid whose cells would train for an hour, started in
a session of its own, and what its workers are doing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[2]
GRID = {**TINY, "experiment": "suppression", "grid": {"seeds": [0], "triggers": ["token", "computed"]},
        "training": {**TINY["training"], "steps": 100_000}}  # cells that would train for an hour: the signal must stop them
LABELS = ("token-s0", "computed-s0")


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def whitebox_process(*args: str, cwd: Path) -> subprocess.Popen:
    """`python -m whitebox ARGS` in a session of its own, so that only the signals a test sends reach it; its
    stderr goes to cwd/stderr.log (a pipe nobody reads would fill up with progress bars and stall it). Ctrl-C is
    restored to its default in the child: a suite started in the background (`pytest &`) inherits SIGINT ignored,
    and a process that starts with SIGINT ignored never sees the Ctrl-C a test sends."""
    with open(cwd / "stderr.log", "ab") as err:
        return subprocess.Popen([sys.executable, "-m", "whitebox", *args], cwd=cwd, env=env(),
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def stderr_of(cwd: Path) -> str:
    return (cwd / "stderr.log").read_text(errors="replace")


def alive(pid: int) -> bool:
    """Running (a zombie, which no init in a container may reap, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def training_workers(run_dir: Path, parent: subprocess.Popen, timeout: float = 240) -> list[int]:
    """The pids of the two workers, once both cells have saved a checkpoint (they are mid-plant)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert parent.poll() is None, stderr_of(run_dir.parent)[-2000:]
        locks = [run_dir / "cells" / f"{label}.lock" for label in LABELS]
        started = [list((run_dir / "cells" / label / "checkpoints" / "plant").glob("step_*")) for label in LABELS]
        if all(started) and all(lock.is_file() for lock in locks):
            return [json.loads(lock.read_text())["pid"] for lock in locks]
        time.sleep(0.5)
    raise AssertionError(f"the cells did not start within {timeout} s")


def gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not any(alive(pid) for pid in pids)


def grid_config(tmp_path: Path) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(GRID))
    return path
