"""One writer per run directory, and nobody's files written over: a second writer is refused at once naming the
holder; a run directory, or `probe fit`'s output, is a new or truly empty directory, never one of anyone's."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import whitebox
from tests.conftest import TINY, one_thread
from tests.reliability.jobs import env
from whitebox.cli.main import main
from whitebox.config import parse_config
from whitebox.runtime.locks import writing

NAMES = st.sampled_from([".bashrc", ".git", ".DS_Store", ".x.tmp", "probe.json", "notes.txt", "config.yaml",
                         "run.lock.old", "summary.json", ".config.yaml.tmp"])


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    """A finished tiny plant run: models/planted, probes of nobody's, everything a user would not want replaced."""
    run_dir = tmp_path_factory.mktemp("writers") / "runs" / "tiny"
    with one_thread():
        whitebox.run(parse_config(TINY), out=run_dir)
    return run_dir


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _refused(capsys, argv: list[str], code: int = 2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def _holder(run_dir: Path) -> str:
    return f"run directory {run_dir} is being run by process {os.getpid()} on {socket.gethostname()} (lock {run_dir}/run.lock)"


@pytest.fixture
def tiny_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def _probe_fit(tiny_yaml: Path, checkpoint: Path, *extra: str) -> list[str]:
    return ["probe", "fit", str(tiny_yaml), "--set", f"locate.checkpoint={checkpoint}", "--set", "locate.n_fit=60",
            "--set", "locate.n_test=40", *extra]


def test_every_writer_is_refused_while_another_holds_the_run_directory(done, tiny_yaml, tmp_path, capsys, figures):
    """While a live process holds run.lock: run --out, --resume, sweep --out, report and probe fit --out are each
    refused at once in one line naming the holder's pid, host, command and start; no file changes."""
    grid = tmp_path / "grid"
    assert main(["sweep", str(tiny_yaml), "--set", "experiment=suppression", "--set", "grid.seeds=[0]",
                 "--set", "grid.triggers=[token]", "--out", str(grid)]) == 0
    capsys.readouterr()
    fresh = tmp_path / "fresh"
    cases = {
        done: [["run", "--resume", str(done)]],
        fresh: [["run", str(tiny_yaml), "--out", str(fresh)],
                ["sweep", str(tiny_yaml), "--set", "experiment=suppression", "--out", str(fresh)],
                _probe_fit(tiny_yaml, done / "models" / "planted", "--out", str(fresh))],
        grid: [["run", "--resume", str(grid)], ["run", "--resume", str(grid), "--workers", "2"], ["report", str(grid)]],
    }
    tried = 0
    for run_dir, commands in cases.items():
        with writing(run_dir):
            before = _files(run_dir)
            for argv in commands:
                err = _refused(capsys, argv)
                tried += 1
                assert _holder(run_dir) in err, (argv, err)
                assert ", started 20" in err and " by `" in err and "delete the lock file" in err
                assert _files(run_dir) == before
    assert not fresh.exists() or sorted(os.listdir(fresh)) == []
    figures(parser="a second writer while run.lock is held (run, --resume, sweep, report, probe fit)", cases=tried,
            accepted=0, rejected=tried, other_exceptions=0, files_written=0)


def test_two_runs_started_together_into_one_directory_give_one_run(done, tiny_yaml, tmp_path, figures):
    """`whitebox run CFG --out D` twice at once, as two processes: one runs, the other exits 2 with one line naming
    the holder (or the finished run), and metrics.jsonl holds one run's records."""
    out, procs = tmp_path / "race", []
    for i in range(2):
        with open(tmp_path / f"race-{i}.err", "wb") as err:
            procs.append(subprocess.Popen([sys.executable, "-m", "whitebox", "run", str(tiny_yaml), "--out", str(out)],
                                          cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL, stderr=err))
    codes = [proc.wait(timeout=300) for proc in procs]
    assert sorted(codes) == [0, 2], codes
    loser = (tmp_path / f"race-{codes.index(2)}.err").read_text().strip()
    assert loser.count("\n") == 0 and "Traceback" not in loser, loser
    assert f"run directory {out} is being run by process" in loser or "already exists and holds a run" in loser
    assert len((out / "metrics.jsonl").read_text().splitlines()) == len((done / "metrics.jsonl").read_text().splitlines())
    assert json.loads((out / "summary.json").read_text())["status"] == "complete" and not (out / "run.lock").exists()
    figures(trials=1, both_ran=0, duplicate_records=0)


@pytest.mark.parametrize("rival", ["holds the lock", "has finished"])
def test_a_rival_between_the_look_and_the_lock_wins_and_we_are_refused(tiny_yaml, tmp_path, capsys, monkeypatch, rival):
    """The other order, made deterministic: the directory was empty when we looked, and a rival took it before
    our lock (it holds run.lock, or it has written its config and gone): refused in one line, its files kept."""
    from whitebox.runtime import locks

    out = tmp_path / "run"
    real = locks._acquire

    def rival_first(path, what, me):
        out.mkdir(exist_ok=True)
        if rival == "holds the lock":
            (out / "run.lock").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(),
                                                     "command": "whitebox run rival.yaml", "since": "2026-01-01 00:00:00"}))
        else:
            (out / "config.yaml").write_text("the rival's")
        return real(path, what, me)

    monkeypatch.setattr(locks, "_acquire", rival_first)
    err = _refused(capsys, ["run", str(tiny_yaml), "--out", str(out)])
    theirs = _files(out)
    if rival == "holds the lock":
        assert f"is being run by process {os.getppid()}" in err and "by `whitebox run rival.yaml`" in err
        assert set(theirs) == {"run.lock"}
    else:
        assert "already exists and holds a run" in err and theirs == {"config.yaml": b"the rival's"}


def test_a_dead_writers_lock_is_taken_over_and_another_hosts_is_not(done, tmp_path, capsys):
    """run.lock of a process that died on this host: --resume takes it over; one naming another host stays held."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = done / "run.lock"
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "command": "whitebox run x",
                                "since": "2026-01-01 00:00:00"}))
    assert main(["run", "--resume", str(done)]) == 0 and not lock.exists()
    capsys.readouterr()
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "command": "whitebox run x", "since": "2026-01-01 00:00:00"}))
    try:
        err = _refused(capsys, ["run", "--resume", str(done)])
        assert "is being run by process 1 on elsewhere" in err and "started 2026-01-01 00:00:00 by `whitebox run x`" in err
    finally:
        lock.unlink()


@pytest.mark.parametrize("content", ['{"pid": 1000000000000000000000000000000, "host": "HOST"}', '{"pid": true, "host": "HOST"}',
                                     '{"pid": -1, "host": "HOST"}', '{"pid": 0, "host": "HOST"}', '{"pid": 5}', "[]", '"x"',
                                     "", "\xff\xfe", "a directory"])
def test_a_lock_that_is_not_ours_is_one_line_and_left_alone(done, tiny_yaml, tmp_path, capsys, content):
    """run.lock holding no pid a process can have (huge, boolean, negative, zero), no host, not JSON, not text, or a
    directory: every writer refused in one line naming the file, which stays as it was."""
    for run_dir, argv in ((done, ["run", "--resume", str(done)]), (tmp_path / "new", ["run", str(tiny_yaml), "--out", str(tmp_path / "new")])):
        run_dir.mkdir(exist_ok=True)
        lock = run_dir / "run.lock"
        if content == "a directory":
            lock.mkdir()
        else:
            lock.write_bytes(content.replace("HOST", socket.gethostname()).encode("latin-1"))
        try:
            err = _refused(capsys, argv)
            assert f"locked by {lock}, which names no owner" in err, err
            assert lock.is_dir() if content == "a directory" else lock.read_bytes() == content.replace(
                "HOST", socket.gethostname()).encode("latin-1")
        finally:
            shutil.rmtree(lock) if lock.is_dir() else lock.unlink()


def test_probe_fit_never_writes_into_the_grid_holding_a_cells_checkpoint(done, tiny_yaml, tmp_path, capsys):
    """A cell's model as locate.checkpoint: --out inside the cell, or inside the grid around it, is refused."""
    grid = tmp_path / "grid"
    shutil.copytree(done, grid / "cells" / "token-s0")
    (grid / "config.yaml").write_text("experiment: suppression\n")
    planted = grid / "cells" / "token-s0" / "models" / "planted"
    for out in (grid / "probes", grid / "cells" / "token-s0" / "probes2"):
        err = _refused(capsys, _probe_fit(tiny_yaml, planted, "--out", str(out)))
        assert "a run holding locate.checkpoint" in err and not out.exists(), err


def test_a_folder_holding_anything_is_never_used_as_a_run_or_probe_directory(tiny_yaml, tmp_path, done, capsys, figures):
    """--out to a folder holding any files or folders (hypothesis), hidden ones (.bashrc, .git) included: run, sweep
    and probe fit refuse it in one line naming the folder, and it is left byte for byte as it was."""
    folder, planted, tried = tmp_path / "theirs", done / "models" / "planted", [0]

    @settings(max_examples=25, deadline=None, derandomize=True)
    @given(names=st.sets(NAMES, min_size=1, max_size=4), directory=st.booleans())
    def check(names: set[str], directory: bool) -> None:
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        for name in names:
            if directory and name.startswith(".g"):
                (folder / name).mkdir()
            else:
                (folder / name).write_text(f"{name} of theirs")
        before = _files(folder)
        for argv in (["run", str(tiny_yaml), "--out", str(folder)],
                     ["sweep", str(tiny_yaml), "--set", "experiment=suppression", "--out", str(folder)],
                     _probe_fit(tiny_yaml, planted, "--out", str(folder))):
            err = _refused(capsys, argv)
            tried[0] += 1
            assert str(folder) in err and ("new or empty" in err or "--resume" in err), err
            assert _files(folder) == before and sorted(os.listdir(folder)) == sorted(names)

    check()
    figures(parser="--out to a folder holding files (run, sweep, probe fit)", cases=tried[0], accepted=0,
            rejected=tried[0], other_exceptions=0, files_written=0)


def test_probe_fit_never_writes_into_the_checkpoints_run_or_an_existing_folder(done, tiny_yaml, tmp_path, capsys,
                                                                                 monkeypatch, figures):
    """Without --out (run.name names the checkpoint's run), --out to that run, a new folder inside it, or a file:
    refused, the run unchanged; into a new folder it fits, and the same command again is refused."""
    planted = done / "models" / "planted"
    before = _files(done)
    monkeypatch.chdir(done.parent.parent)  # ./runs/tiny is the checkpoint's run
    (tmp_path / "a-file").write_text("mine")
    cases = [_probe_fit(tiny_yaml, planted), _probe_fit(tiny_yaml, planted, "--out", str(done)),
             _probe_fit(tiny_yaml, planted, "--out", str(done / "probes-again")),
             _probe_fit(tiny_yaml, planted, "--out", str(planted / "x")),
             _probe_fit(tiny_yaml, planted, "--out", str(tmp_path / "a-file"))]
    for argv in cases:
        err = _refused(capsys, argv)
        assert "probe fit" in err and ("--out" in err or "run.name" in err), err
    assert _files(done) == before and not (done / "probes-again").exists()
    assert (tmp_path / "a-file").read_text() == "mine"
    new = tmp_path / "new"
    assert main(_probe_fit(tiny_yaml, planted, "--out", str(new))) == 0
    fitted = _files(new)
    assert fitted and not (new / "run.lock").exists()
    capsys.readouterr()
    assert "already exists and is not empty" in _refused(capsys, _probe_fit(tiny_yaml, planted, "--out", str(new)))
    assert _files(new) == fitted
    figures(parser="probe fit into the checkpoint's run or an existing folder", cases=len(cases) + 1, accepted=0,
            rejected=len(cases) + 1, other_exceptions=0, files_written=0)


def test_a_probe_fit_that_fails_leaves_no_half_written_folder(tiny_yaml, tmp_path, capsys):
    """A fit that fails after claiming its new folder (no model there) removes what it made, so running the same
    command again is not refused as 'not empty'."""
    out = tmp_path / "new"
    err = _refused(capsys, _probe_fit(tiny_yaml, tmp_path / "no-model", "--out", str(out)))
    assert "no-model" in err and not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    _refused(capsys, _probe_fit(tiny_yaml, tmp_path / "no-model", "--out", str(empty)))
    assert empty.is_dir() and not list(empty.iterdir())


def test_a_run_killed_before_its_config_landed_starts_again(tiny_yaml, tmp_path, capsys):
    """A folder holding only a dead run's lock and an atomic write's temporary: the same command starts it afresh."""
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / "run.lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    (out / ".config.yaml.ab3d_9xz.tmp").write_text("half")
    assert main(["run", str(tiny_yaml), "--out", str(out), "--set", "training.steps=6"]) == 0
    assert json.loads((out / "summary.json").read_text())["status"] == "complete" and not (out / "run.lock").exists()
