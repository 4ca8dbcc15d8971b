"""`whitebox run --workers K`: a grid's cells in K local processes, each `whitebox cell RUN_DIR --cell LABEL`.

A worker is the same command a W&B sweep agent runs, so both share one code path and the cell
locks. Each worker's output goes to <run>/cells/<label>.log. Threads: a worker gets
OMP_NUM_THREADS = max(1, cores // K) unless OMP_NUM_THREADS is already set, which is kept. After a
cell fails no new cell starts; the running ones finish (their work is kept) and the error names the
failed cell, its directory and its log.

Each worker runs in a session of its own and dies with its parent (whitebox/runtime/signals.py): a
Ctrl-C or SIGTERM reaches the parent, which passes it on to every worker, waits up to STOP_SECONDS for
them to save a checkpoint and exit, and exits 130; a second one stops them at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from whitebox.config import ExperimentConfig
from whitebox.grid.cells import cell_dir, finished_summary, grid_cells
from whitebox.runtime.rundir import RunDir, cell_label
from whitebox.runtime.signals import PARENT

POLL_SECONDS = 0.2
STOP_SECONDS = 120.0  # how long an interrupted parent waits for its workers' checkpoints before killing them


class CellFailed(Exception):
    """A cell run by a worker process exited with an error."""


def worker_env(workers: int, environ: Mapping[str, str] = os.environ, cores: int | None = None) -> dict[str, str]:
    """The environment of a worker: the parent's, with the cores shared out unless OMP_NUM_THREADS is set."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    env = dict(environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, cores // workers)))
    return env


def cell_command(run_dir: Path, label: str) -> list[str]:
    return [sys.executable, "-m", "whitebox", "cell", str(run_dir), "--cell", label]


def run_in_workers(cfg: ExperimentConfig, run_dir: Path, workers: int) -> dict[tuple[str, int], dict[str, Any]]:
    """Every cell of cfg.grid, at most `workers` at a time in their own processes; summaries by cell, in grid order."""
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    cells = grid_cells(cfg)
    queue = [cell for cell in cells if finished_summary(cell_dir(run_dir, *cell)) is None]
    env = {**worker_env(workers), PARENT: str(os.getpid())}
    running: dict[tuple[str, int], tuple[subprocess.Popen, int]] = {}  # the process, and where its output starts in the log
    failed: list[str] = []
    with tqdm(total=len(cells), initial=len(cells) - len(queue), desc=f"cells ({workers} workers)", unit="cell",
              dynamic_ncols=True) as bar:
        try:
            while queue or running:
                while queue and not failed and len(running) < workers:
                    cell = queue.pop(0)
                    running[cell] = _start(run_dir, cell_label(*cell), env)
                if (shown := ", ".join(cell_label(*cell) for cell in running)) != bar.postfix:
                    bar.set_postfix_str(shown)
                time.sleep(POLL_SECONDS)
                for cell, (proc, start) in list(running.items()):
                    if proc.poll() is None:
                        continue
                    del running[cell]
                    bar.update(1)
                    if proc.returncode != 0:
                        failed.append(_failure(run_dir, cell, proc.returncode, start))
        except KeyboardInterrupt:
            stop([proc for proc, _ in running.values()])
            raise
    if failed:
        more = f" ({len(failed) - 1} more cells failed, each named in its log)" if len(failed) > 1 else ""
        raise CellFailed(f"{failed[0]}{more}; finished cells are kept: continue with "
                         f"`whitebox run --resume {run_dir} --workers {workers}`")
    return {cell: _finished(run_dir, cell) for cell in cells}


def _start(run_dir: Path, label: str, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    log = cell_log(run_dir, label)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:  # the child holds its own handle
        start = out.tell()
        proc = subprocess.Popen(cell_command(run_dir, label), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return proc, start


def stop(procs: list[subprocess.Popen]) -> None:
    """Pass an interrupt on to every worker (each saves a checkpoint and exits), and wait for them; after
    STOP_SECONDS, or at a second interrupt, kill those still running (their newest checkpoints stay)."""
    for proc in procs:
        _signal(proc, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    try:
        for proc in procs:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        for proc in procs:
            _signal(proc, signal.SIGKILL)
            proc.wait()


def _signal(proc: subprocess.Popen, signum: int) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass


def cell_log(run_dir: Path, label: str) -> Path:
    return RunDir(run_dir).cell_log(label)


def _failure(run_dir: Path, cell: tuple[str, int], code: int, start: int = 0) -> str:
    """One line naming the failed cell, its directory, its log and the worker's error (its last line if none)."""
    label = cell_label(*cell)
    log = cell_log(run_dir, label)
    with open(log, "rb") as f:  # only what this worker wrote: an earlier attempt's lines are not its error
        f.seek(start)
        lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("whitebox: ") and not line.startswith("whitebox: interrupted")]
    last = f": {(errors or lines)[-1]}" if lines else ""
    return f"cell {label} failed (exit {code}) in {cell_dir(run_dir, *cell)}; its output is in {log}{last}"


def _finished(run_dir: Path, cell: tuple[str, int]) -> dict[str, Any]:
    summary = finished_summary(cell_dir(run_dir, *cell))
    if summary is None:
        raise CellFailed(f"cell {cell_label(*cell)} exited without finishing; its output is in "
                         f"{cell_log(run_dir, cell_label(*cell))}")
    return summary
