import subprocess
import sys

import pytest

from tests.cli.test_main import _fails
from tests.grid.test_sweep import GRID_SETS
from whitebox.cli.main import main
from whitebox.grid.workers import worker_env
from whitebox.runtime.locks import hold


def test_workers_share_the_cores_unless_the_threads_are_set():
    assert worker_env(4, {}, cores=8)["OMP_NUM_THREADS"] == "2"
    assert worker_env(3, {}, cores=2)["OMP_NUM_THREADS"] == "1"
    assert worker_env(2, {"OMP_NUM_THREADS": "3", "X": "y"}, cores=8) == {"OMP_NUM_THREADS": "3", "X": "y"}


@pytest.fixture
def grid_dir(tiny_yaml, tmp_path, capsys):
    """A grid run directory as `whitebox sweep` leaves it: config.yaml, no cell run yet."""
    out = tmp_path / "grid"
    assert main(["sweep", str(tiny_yaml), *GRID_SETS, "--out", str(out)]) == 0
    capsys.readouterr()
    return out


def test_a_cell_being_run_elsewhere_is_not_run_again(grid_dir, capsys):
    lock = grid_dir / "cells" / "token-s1.lock"
    with hold(lock, "cell token-s1"):
        err = _fails(capsys, ["cell", str(grid_dir), "--cell", "token-s1"])
        assert err.startswith(f"whitebox: error: cell token-s1 of {grid_dir} is being run by process ")
        proc = subprocess.run([sys.executable, "-m", "whitebox", "cell", str(grid_dir), "--cell=token-s1"],
                              capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and f"(lock {lock})" in proc.stderr
        assert lock.is_file()
    assert not (grid_dir / "cells" / "token-s1").exists()  # neither attempt started the cell


def test_the_serial_loop_respects_the_lock_too(grid_dir, capsys):
    with hold(grid_dir / "cells" / "token-s0.lock", "cell token-s0"):
        assert main(["run", "--resume", str(grid_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"whitebox: error: cell token-s0 of {grid_dir} is being run by process ") and "Traceback" not in err
    assert not (grid_dir / "cells" / "token-s0").exists() and not list(grid_dir.glob("cells/*.lock"))


def test_bad_cell_and_workers_are_one_line_errors(grid_dir, tiny_yaml, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a run started by mistake would land in ./runs
    err = _fails(capsys, ["cell", str(grid_dir), "--cell", "token-s7"])
    assert err == "whitebox: error: --cell 'token-s7': not a cell of this run; its cells: " + ", ".join(
        f"{t}-s{s}" for t in ("token", "computed") for s in (0, 1, 2))
    assert "no config.yaml here" in _fails(capsys, ["cell", str(tmp_path), "--cell", "token-s0"])
    assert _fails(capsys, ["run", str(tiny_yaml), "--workers", "0"]) == "whitebox: error: --workers: must be 1 or more (got 0)"
    assert "--workers: experiment 'plant' has no grid of cells" in _fails(capsys, ["run", str(tiny_yaml), "--workers", "2"])
    assert "--workers: must be 1 or more" in _fails(capsys, ["run", "--resume", str(grid_dir), "--workers", "0"])
    assert not (tmp_path / "runs").exists()
