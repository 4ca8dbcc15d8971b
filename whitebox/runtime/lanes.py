"""Steps of one run that do not depend on each other, side by side: two 1-thread lanes instead of one 2-thread lane.

The models whitebox plants gain little from a second intra-op thread (a batch-64 step of the
quickstart model is about 1.1x faster on 2 threads than on 1), so a run whose steps are independent
(the honest plant beside plant and locate, the treatment cells, the revivals) runs them in `lanes`
threads, each with its share of the torch threads. Torch kernels release the GIL. What the lanes
share is made safe: the global RNG (a seeded model build holds RNG_LOCK, see `seeded`), the
tracker (its own lock), the checkpoint owner (each lane runs in a copy of the caller's context)
and Ctrl-C or SIGTERM: the main thread's handler sets STOP, which ends every lane's training loop
at its step boundary with a checkpoint. Every job's computation is its own and seeded, so the
results do not depend on how jobs were spread over lanes.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

RNG_LOCK = threading.RLock()  # held while the global torch RNG is seeded and drawn from (model initialisation)
STOP = threading.Event()  # set on Ctrl-C / SIGTERM: every lane's training loop stops at its step boundary
_lane = threading.local()


@dataclass(frozen=True)
class Job:
    """One step: `run(results)` gets the results of the jobs it comes `after` (by name) and returns its own."""

    name: str
    run: Callable[[dict[str, Any]], Any]
    after: tuple[str, ...] = ()


def current_lane() -> int:
    """The lane this thread runs (0: the main thread), e.g. for a progress bar's row."""
    return getattr(_lane, "index", 0)


def resolve_lanes(setting: int | str, device: torch.device) -> int:
    """`run.lanes`: auto is 2 on a CPU with at least 2 torch threads (each lane then gets half), else 1; under
    torchrun always 1 (every rank must run the same step at the same time)."""
    from whitebox.runtime import distributed

    if distributed.active():
        return 1
    if setting != "auto":
        return int(setting)
    return 2 if device.type == "cpu" and torch.get_num_threads() >= 2 else 1


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """torch.manual_seed(seed) for the block, which no other lane's seeded block interleaves with; the global RNG
    is restored after it (nothing else in a run draws from it)."""
    with RNG_LOCK, torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def run_jobs(jobs: list[Job], lanes: int) -> dict[str, Any]:
    """Run every job once its `after` jobs are done, in list order where several are ready, on `lanes` threads
    (the caller's thread is lane 0); return each job's result by name.

    After a job fails no other job starts; the running ones finish and the first error is raised. A Ctrl-C
    sets STOP, so the other lanes stop at their next step boundary too, and KeyboardInterrupt is raised.
    """
    names = [job.name for job in jobs]
    unknown = {dep for job in jobs for dep in job.after} - set(names)
    if len(set(names)) != len(names) or unknown:
        raise ValueError(f"jobs need unique names and known dependencies (unknown: {sorted(unknown)})")
    if lanes <= 1:
        results: dict[str, Any] = {}
        for job in _in_order(jobs):
            results[job.name] = job.run(results)
        return results
    return _Scheduler(jobs).run(lanes)


def _in_order(jobs: list[Job]) -> list[Job]:
    """The jobs in list order, each moved after the jobs it depends on."""
    done: set[str] = set()
    ordered: list[Job] = []
    pending = list(jobs)
    while pending:
        job = next((j for j in pending if set(j.after) <= done), None)
        if job is None:
            raise ValueError(f"jobs depend on each other in a circle: {[j.name for j in pending]}")
        pending.remove(job)
        ordered.append(job)
        done.add(job.name)
    return ordered


class _Scheduler:
    def __init__(self, jobs: list[Job]):
        _in_order(jobs)  # refuses a circle before any lane starts
        self.pending = list(jobs)
        self.results: dict[str, Any] = {}
        self.errors: list[BaseException] = []
        self.ready = threading.Condition()

    def run(self, lanes: int) -> dict[str, Any]:
        threads_each = max(1, torch.get_num_threads() // lanes)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads_each)
        STOP.clear()
        workers = [threading.Thread(target=contextvars.copy_context().run, args=(self._lane, i), daemon=True,
                                    name=f"whitebox-lane-{i}") for i in range(1, lanes)]
        try:
            for worker in workers:
                worker.start()
            self._lane(0)
        except BaseException as err:  # noqa: BLE001 - Ctrl-C here (between jobs or waiting): stop the other lanes
            STOP.set()
            self._fail(err)
        finally:
            for worker in workers:
                _join(worker)
            torch.set_num_threads(previous)
        interrupts = [e for e in self.errors if isinstance(e, KeyboardInterrupt)]
        if interrupts:
            raise interrupts[0]
        if self.errors:
            raise self.errors[0]
        return self.results

    def _lane(self, index: int) -> None:
        _lane.index = index
        while (job := self._next()) is not None:
            try:
                result = job.run(self.results)
            except BaseException as err:  # noqa: BLE001 - reported by run(), after every lane has stopped
                if isinstance(err, KeyboardInterrupt):  # the other lanes stop at their step boundary too
                    STOP.set()
                self._fail(err)
                return
            with self.ready:
                self.results[job.name] = result
                self.ready.notify_all()

    def _next(self) -> Job | None:
        with self.ready:
            while True:
                if self.errors or not self.pending:
                    return None
                job = next((j for j in self.pending if all(d in self.results for d in j.after)), None)
                if job is not None:
                    self.pending.remove(job)
                    return job
                self.ready.wait()

    def _fail(self, err: BaseException) -> None:
        with self.ready:
            self.errors.append(err)
            self.ready.notify_all()


def _join(worker: threading.Thread) -> None:
    """Wait for a lane to finish its step and checkpoint; a second Ctrl-C here leaves it to die with the process."""
    try:
        while worker.is_alive():
            worker.join(timeout=0.2)
    except KeyboardInterrupt:
        STOP.set()
        os.write(2, b"\nwhitebox: stopping now, without waiting for the other lane's checkpoint\n")
        raise
