"""How a whitebox process meets signals: SIGINT and SIGTERM alike, one line and exit 130 at any moment (while
starting, at once; while working, after a checkpoint), and a `--workers` worker never outlives its parent.

The parent of `--workers K` starts each worker in a session of its own, so a signal meant for the job
reaches the parent, which passes it on (whitebox/grid/workers.py); a worker asks the kernel for a SIGTERM
when its parent dies (Linux; elsewhere a thread watches the parent), so a parent killed with SIGKILL
leaves no orphan running its cells.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterator

PARENT = "WHITEBOX_WORKER_OF"  # set for a --workers worker: the pid of the parent it must not outlive
PR_SET_PDEATHSIG = 1  # prctl(2)
WATCH_SECONDS = 1.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_INTERRUPTED = 130


@contextlib.contextmanager
def starting() -> Iterator[None]:
    """While the CLI starts (imports, config checks: nothing written yet), SIGINT or SIGTERM ends the process
    at once with one line and exit 130; raised as KeyboardInterrupt inside torch's native import it would
    abort the interpreter instead. A --workers worker also arranges here to die with its parent."""
    with _handlers(_stop_now):
        parent = os.environ.get(PARENT, "")
        if parent.isdigit():
            die_with(int(parent))
        yield


@contextlib.contextmanager
def working() -> Iterator[None]:
    """While the work runs, SIGINT and SIGTERM raise KeyboardInterrupt: the training loop finishes its step and
    saves a checkpoint, the CLI says how to continue and exits 130."""
    with _handlers(_interrupt):
        yield


@contextlib.contextmanager
def _handlers(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """`handler` for every stop signal not ignored (a job started in the background ignores SIGINT); the
    previous handlers back after the block. Only the main thread may set handlers: elsewhere, none are set."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for signum, old in previous.items():
        if old is not signal.SIG_IGN:
            signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _stop_now(signum: int, frame: Any) -> None:
    os.write(2, f"\nwhitebox: interrupted ({signal.Signals(signum).name}) while starting, before any file was "
                "written; run the same command again\n".encode())
    os._exit(EXIT_INTERRUPTED)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def die_with(parent: int) -> None:
    """Get SIGTERM when process `parent` (ours) exits; at once if it already has."""
    if not _kernel_watches():
        threading.Thread(target=_watch, args=(parent,), daemon=True, name="whitebox-parent-watch").start()
    if os.getppid() != parent:  # it died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def _kernel_watches() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)
