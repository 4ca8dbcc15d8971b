import json
import os
import socket
import subprocess
import sys

import pytest

from whitebox.runtime.locks import LockHeld, hold


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_a_lock_is_created_exclusively_and_removed_after_the_block(tmp_path):
    path = tmp_path / "cells" / "a.lock"
    with hold(path, "cell a"):
        owner = json.loads(path.read_text())
        assert (owner["pid"], owner["host"]) == (os.getpid(), socket.gethostname()) and owner["command"] and owner["since"]
        with pytest.raises(LockHeld, match=f"cell a is being run by process {os.getpid()} on {socket.gethostname()}"):
            with hold(path, "cell a"):
                pass
        assert path.is_file()  # the refused attempt left the holder's lock alone
    assert not path.exists()


def test_the_lock_is_released_when_the_work_fails(tmp_path):
    path = tmp_path / "a.lock"
    with pytest.raises(RuntimeError):
        with hold(path, "cell a"):
            raise RuntimeError("boom")
    assert not path.exists()
    with hold(path, "cell a"):
        assert path.is_file()


def test_a_dead_owner_on_this_host_is_taken_over(tmp_path):
    path = tmp_path / "a.lock"
    path.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    with hold(path, "cell a"):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no stale copy left behind


def test_a_live_owner_another_host_or_an_unreadable_lock_counts_as_held(tmp_path):
    path = tmp_path / "a.lock"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
        with pytest.raises(LockHeld, match=f"process {sleeper.pid} .*delete the lock file if that process is gone"):
            with hold(path, "cell a"):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    path.write_text(json.dumps({"pid": _dead_pid(), "host": "elsewhere"}))  # cannot be checked from here
    with pytest.raises(LockHeld, match="on elsewhere"):
        with hold(path, "cell a"):
            pass
    path.write_text("")  # created, owner not yet written
    with pytest.raises(LockHeld, match="names no owner"):
        with hold(path, "cell a"):
            pass
    assert path.read_text() == ""
