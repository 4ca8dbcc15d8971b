"""`whitebox run --workers K`: a grid's cells in K local processes, each `whitebox cell RUN_DIR --cell LABEL`.

A worker is the same command a W&B sweep agent runs, so both share one code path and the cell
locks. Each worker's output goes to <run>/cells/<label>.log. Threads: a worker gets
OMP_NUM_THREADS = max(1, cores // K) unless OMP_NUM_THREADS is already set, which is kept. After a
cell fails no new cell starts; the running ones finish (their work is kept) and the error names the
failed cell, its directory and its log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from whitebox.config import ExperimentConfig
from whitebox.grid.cells import cell_dir, finished_summary, grid_cells
from whitebox.runtime.rundir import RunDir, cell_label

POLL_SECONDS = 0.2


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
    env = worker_env(workers)
    running: dict[tuple[str, int], subprocess.Popen] = {}
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
                for cell, proc in list(running.items()):
                    if proc.poll() is None:
                        continue
                    del running[cell]
                    bar.update(1)
                    if proc.returncode != 0:
                        failed.append(_failure(run_dir, cell, proc.returncode))
        except KeyboardInterrupt:
            for proc in running.values():  # Ctrl-C reached them too: each saves a checkpoint and exits
                proc.wait()
            raise
    if failed:
        more = f" ({len(failed) - 1} more cells failed, each named in its log)" if len(failed) > 1 else ""
        raise CellFailed(f"{failed[0]}{more}; finished cells are kept: continue with "
                         f"`whitebox run --resume {run_dir} --workers {workers}`")
    return {cell: _finished(run_dir, cell) for cell in cells}


def _start(run_dir: Path, label: str, env: dict[str, str]) -> subprocess.Popen:
    log = cell_log(run_dir, label)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:  # the child holds its own handle
        return subprocess.Popen(cell_command(run_dir, label), stdout=out, stderr=subprocess.STDOUT, env=env)


def cell_log(run_dir: Path, label: str) -> Path:
    return RunDir(run_dir).cell_log(label)


def _failure(run_dir: Path, cell: tuple[str, int], code: int) -> str:
    """One line naming the failed cell, its directory, its log and the log's last line."""
    label = cell_label(*cell)
    log = cell_log(run_dir, label)
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    last = f": {lines[-1]}" if lines else ""
    return f"cell {label} failed (exit {code}) in {cell_dir(run_dir, *cell)}; its output is in {log}{last}"


def _finished(run_dir: Path, cell: tuple[str, int]) -> dict[str, Any]:
    summary = finished_summary(cell_dir(run_dir, *cell))
    if summary is None:
        raise CellFailed(f"cell {cell_label(*cell)} exited without finishing; its output is in "
                         f"{cell_log(run_dir, cell_label(*cell))}")
    return summary
