"""A lock file per piece of work, so two processes never write one run directory or run one cell at once.

The lock is created with O_CREAT|O_EXCL and holds the owner's pid, host, command and start time. A
lock left by a process that died (same host, pid gone) is taken over; one from another host cannot
be checked and counts as held (delete the file by hand if that machine's process is gone). Every
run directory has one (run.lock, held by whoever writes in it: a run, a resume, `probe fit`,
`report`); a grid's cells have their own (cells/<label>.lock), so workers are never locked out by
their parent.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from whitebox.config import ConfigError
from whitebox.runtime import distributed
from whitebox.runtime.artifacts import write_failed
from whitebox.runtime.rundir import RunDir

LEFTOVER = re.compile(r"\.[^/]+\.[A-Za-z0-9_]{8}\.tmp")  # a temporary of atomic_write, left by a run killed mid-write


class LockHeld(Exception):
    """Another live process holds the lock."""


@contextlib.contextmanager
def hold(path: str | Path, what: str) -> Iterator[Path]:
    """Hold the lock file `path` for the block (`what` names the work in the error if it is taken).

    Under torchrun the ranks of one run do the work together: rank 0 takes the lock for all of them,
    and every rank raises LockHeld if it could not.
    """
    path = Path(path)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    refused: Exception | None = None
    if distributed.is_main():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _acquire(path, what, me)
        except LockHeld as err:
            refused = err
        except OSError as err:  # the disk refused the lock itself (read-only, full, no permission)
            refused = write_failed(path, err)
    if distributed.any_rank(refused is not None):
        raise refused or LockHeld(f"{what}: rank 0 could not take the lock {path}; see its error")
    try:
        yield path
    finally:
        if _same(_owner(path), me):
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def writing(run_dir: str | Path | RunDir) -> Iterator[RunDir]:
    """Hold run_dir's run.lock for the block: one writer (run, resume, probe fit, report) per run directory."""
    run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))
    with hold(run_dir.lock, f"run directory {run_dir}"):
        yield run_dir


@contextlib.contextmanager
def new_directory(root: str | Path, refuse: Callable[[Path], str]) -> Iterator[RunDir]:
    """Claim `root`, a new or empty directory, under its run.lock for the block; `refuse(root)` is the error
    (a ConfigError) for one that holds anything, hidden files included, so nobody's files are written over.

    Checked before the lock is taken (a full folder is not touched) and again after (two starters racing
    for one new directory: one gets the lock, the other is refused naming it).
    """
    root = Path(root)
    if not _empty(root):
        raise ConfigError(refuse(root))
    with writing(root) as run_dir:
        taken = not _empty(root)
        distributed.barrier()  # every rank has looked before rank 0 writes
        if taken:
            raise ConfigError(refuse(root))
        yield run_dir


def _empty(root: Path) -> bool:
    """Whether `root` is absent or holds nothing but our own lock and a killed write's temporaries."""
    if not root.exists():
        return True
    if not root.is_dir():
        return False
    lock = RunDir(root).lock.name
    try:
        return all(p.name == lock or (LEFTOVER.fullmatch(p.name) and p.is_file()) for p in root.iterdir())
    except OSError as err:
        raise ConfigError(f"{root}: cannot look inside ({err.strerror or err}); give --out a directory you can read") from None


def _command() -> str:
    """The command line of this process as a user typed it (`whitebox run ...`), for the lock's holder."""
    argv = list(sys.argv) or ["?"]
    if Path(argv[0]).name in ("whitebox", "__main__.py"):
        argv[0] = "whitebox"
    return shlex.join(argv)[:300]


def _same(owner: dict[str, Any] | None, me: dict[str, Any]) -> bool:
    return bool(owner) and owner.get("pid") == me["pid"] and owner.get("host") == me["host"]


def _acquire(path: Path, what: str, me: dict[str, Any]) -> None:
    for _ in range(3):  # a stale lock broken by us, or by a rival in the same instant, gets another try
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(path)
            if owner is None or _alive(owner):
                raise LockHeld(_held_message(path, what, owner)) from None
            _break(path, owner)
            continue
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
        except BaseException:  # a lock naming no owner would block everyone: leave none
            path.unlink(missing_ok=True)
            raise
        return
    raise LockHeld(_held_message(path, what, _owner(path)))


def _held_message(path: Path, what: str, owner: dict[str, Any] | None) -> str:
    if owner is None:
        return (f"{what} is locked by {path}, which names no owner (a process died while taking it, or is taking it "
                "now); delete that file if no whitebox process is running it")
    started = f", started {owner.get('since')} by `{owner['command']}`" if isinstance(owner.get("command"), str) else ""
    return (f"{what} is being run by process {owner.get('pid')} on {owner.get('host')} (lock {path}){started}; "
            "wait for it to finish, or delete the lock file if that process is gone")


def _owner(path: Path) -> dict[str, Any] | None:
    """The lock's {pid, host, ...}; None when it is unreadable (half-written, or not a lock of ours: no pid a
    process can have, no host name) and {} when it has gone."""
    try:
        owner = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return None
    if not isinstance(owner, dict) or not isinstance(owner.get("host"), str):
        return None
    pid = owner.get("pid")
    return owner if isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2**31 else None


def _alive(owner: dict[str, Any]) -> bool:
    """Whether the lock's owner may still run: its pid exists on this host, or it is on another host."""
    if not owner:
        return False  # the lock went away while we looked: try again
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _break(path: Path, stale: dict[str, Any]) -> None:
    """Remove a dead owner's lock; if a rival replaced it meanwhile, put the rival's back."""
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if _owner(aside) not in (stale, {}):
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    aside.unlink(missing_ok=True)
