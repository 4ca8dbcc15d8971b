"""A lock file per piece of work, so two processes (workers, sweep agents) never run the same cell at once.

The lock is created with O_CREAT|O_EXCL and holds the owner's pid and host. A lock left by a
process that died (same host, pid gone) is taken over; one from another host cannot be checked
and counts as held (delete the file by hand if that machine's process is gone).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any, Iterator

from whitebox.runtime import distributed


class LockHeld(Exception):
    """Another live process holds the lock."""


@contextlib.contextmanager
def hold(path: str | Path, what: str) -> Iterator[Path]:
    """Hold the lock file `path` for the block (`what` names the work in the error if it is taken).

    Under torchrun the ranks of one run do the work together: rank 0 takes the lock for all of them,
    and every rank raises LockHeld if it could not.
    """
    path = Path(path)
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    refused = None
    if distributed.is_main():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _acquire(path, what, me)
        except LockHeld as err:
            refused = err
    if distributed.any_rank(refused is not None):
        raise refused or LockHeld(f"{what}: rank 0 could not take the lock {path}; see its error")
    try:
        yield path
    finally:
        if _owner(path) == me:
            path.unlink(missing_ok=True)


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
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return
    raise LockHeld(_held_message(path, what, _owner(path)))


def _held_message(path: Path, what: str, owner: dict[str, Any] | None) -> str:
    if owner is None:
        return (f"{what} is locked by {path}, which names no owner (a process died while taking it, or is taking it "
                "now); delete that file if no whitebox process is running it")
    return (f"{what} is being run by process {owner.get('pid')} on {owner.get('host')} (lock {path}); wait for it "
            "to finish, or delete the lock file if that process is gone")


def _owner(path: Path) -> dict[str, Any] | None:
    """The lock's {pid, host}; None when it is unreadable (half-written) and {} when it has gone."""
    try:
        owner = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None


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
