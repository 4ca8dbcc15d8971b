"""Faults against real runs: SIGKILL, Ctrl-C, a full disk, a read-only directory, W&B unreachable, NaN mid-run.

The SIGKILL loop lives in scripts/fault_injection.py (24 trials for docs/RELIABILITY.md); here it
runs a few trials of each fault so that CI exercises it.
"""

from __future__ import annotations

import builtins
import errno
import importlib.util
import json
import math
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

import whitebox
from tests.conftest import TINY, one_thread
from whitebox.cli.main import main
from whitebox.config import parse_config
from whitebox.runtime.artifacts import WriteFailed
from whitebox.runtime.records import results
from whitebox.tasks import get_task
from whitebox.training import TrainingDiverged
from whitebox.training.backprop import Backprop
from whitebox.training.checkpoints import list_checkpoints, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("fault_injection", ROOT / "scripts" / "fault_injection.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fault_injection"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted tiny plant run every faulted one must end equal to."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    with one_thread():
        summary = whitebox.run(parse_config(TINY), out=run_dir)
    return summary, _records(run_dir)


def _records(run_dir: Path) -> list[str]:
    return [json.dumps({k: v for k, v in json.loads(line).items() if k != "time"})
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_sigkill_sigint_and_full_disk_trials_end_like_an_uninterrupted_run(tmp_path, figures):
    """A few trials of scripts/fault_injection.py: SIGKILL x2, Ctrl-C x1, full disk x1 on the tiny treat experiment."""
    result = _script().run_trials(2, seed=0, work=tmp_path, sigint=1, disk_full=1)
    assert [r["problems"] for r in result["results"]] == [[]] * 4
    for fault in ("sigkill", "sigint", "disk_full"):
        assert result[fault]["records_lost"] == 0 and result[fault]["finished_stages_recomputed"] == 0
        assert result[fault]["faults"] >= result[fault]["trials"]
    figures(**{k: v for k, v in result.items() if k != "results"})


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_saves_a_checkpoint_exits_130_and_resumes(tmp_path, tiny_yaml, reference, signum):
    """Ctrl-C (or SIGTERM, as a scheduler or torchrun sends) at step 10 of 24: the step finishes, step_0000011 is
    written, exit 130; --resume ends equal to the reference."""
    fi = _script()
    run_dir, ledger, log = tmp_path / "run", tmp_path / "ledger", tmp_path / "log"
    code = fi.attempt(["run", str(tiny_yaml), "--out", str(run_dir)], 11, ledger, log, signum=signum,
                      points=("step",))
    assert code == 130
    assert list_checkpoints(run_dir / "checkpoints" / "plant")[-1].name == "step_0000011"
    assert f"interrupted; continue with `whitebox run --resume {run_dir}`" in log.read_text()
    assert fi.attempt(["run", "--resume", str(run_dir)], None, ledger, log) == 0
    assert results(json.loads((run_dir / "summary.json").read_text())) == results(reference[0])
    assert _records(run_dir) == reference[1]


def _refuse_writes(monkeypatch, under: Path, err: int, after: int = 0) -> list[int]:
    """From the `after`+1-th write on, every file write under `under` fails with `err` (as a full or read-only disk does)."""
    calls = [0]
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def refuse(path) -> None:
        if str(path).startswith(str(under)):
            calls[0] += 1
            if calls[0] > after:
                raise OSError(err, os.strerror(err), str(path))

    def fake_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        refuse(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    return calls


@pytest.mark.parametrize("after", [2, 9, 23, 41])
def test_a_full_disk_stops_with_one_line_and_loses_nothing(tmp_path, reference, monkeypatch, after, capsys):
    """ENOSPC from the n-th file write on: WriteFailed naming the file, every earlier file intact, --resume completes."""
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        _refuse_writes(patch, run_dir, errno.ENOSPC, after)
        with pytest.raises(WriteFailed) as err:
            whitebox.run(parse_config(TINY), out=run_dir)
    message = str(err.value)
    assert "No space left on device" in message and "\n" not in message and str(run_dir) in message
    assert _script().intact(run_dir) == []
    started = (run_dir / "config.yaml").is_file()  # else the CLI says: run the same command again
    assert results(whitebox.resume(run_dir) if started else whitebox.run(parse_config(TINY), out=run_dir)) == results(reference[0])
    assert _records(run_dir) == reference[1]


def test_a_read_only_run_directory_is_refused_in_one_line_and_left_as_it_was(tmp_path, tiny_yaml, reference,
                                                                              monkeypatch, capsys):
    """A half-done run whose directory is read-only: --resume exits 1 with one line and changes no file."""
    fi = _script()
    run_dir = tmp_path / "run"
    assert fi.attempt(["run", str(tiny_yaml), "--out", str(run_dir)], 15, tmp_path / "ledger", tmp_path / "log",
                      points=("step",)) == -signal.SIGKILL
    before = _files(run_dir)
    capsys.readouterr()
    with monkeypatch.context() as patch:
        _refuse_writes(patch, run_dir, errno.EROFS)
        assert main(["run", "--resume", str(run_dir)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write (Read-only file system)" in err[0] and f"--resume {run_dir}" in err[0]
    assert _files(run_dir) == before
    assert results(whitebox.resume(run_dir)) == results(reference[0])


def test_wandb_unreachable_online_falls_back_to_offline_and_keeps_every_record(tmp_path, reference, monkeypatch):
    """Online mode with the W&B server unreachable: a warning, an offline W&B run to sync later, metrics complete."""
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "5")
    with pytest.warns(UserWarning, match="W&B online could not start .*logging offline"):
        summary = whitebox.run(parse_config(TINY), ["tracking.wandb_mode=online"], out=tmp_path / "run")
    assert results(summary) == results(reference[0])
    assert _records(tmp_path / "run") == reference[1]
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))


def test_an_infinite_loss_mid_run_stops_with_the_last_good_checkpoint_intact(tmp_path, tiny_yaml, monkeypatch, capsys):
    """inf loss at step 9: exit 1, one line naming the step and step_0000006, which loads (hash-valid) and is finite."""
    import whitebox.protocol.plant

    calls = [0]
    real = whitebox.protocol.plant.supervised

    def poisoned(model, batch):
        calls[0] += 1
        loss = real(model, batch)
        return loss * math.inf if calls[0] == 9 else loss

    monkeypatch.setattr(whitebox.protocol.plant, "supervised", poisoned)
    assert main(["run", str(tiny_yaml), "--out", str(tmp_path / "run")]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "whitebox:" in line]  # beside the progress bar
    assert len(err) == 1 and err[0].startswith("whitebox: training diverged: plant step 9: loss became inf")
    assert "step_0000006" in err[0]
    _assert_last_good(tmp_path / "run", "step_0000006")


def test_a_nan_parameter_after_an_update_is_caught_before_its_checkpoint(tmp_path, monkeypatch):
    """A NaN written into a weight by the update of step 12 (a checkpoint step): stopped there, step_0000006 stays newest."""
    real = Backprop.step
    calls = [0]

    def step(self, model, batch, loss_fn):
        stats = real(self, model, batch, loss_fn)
        calls[0] += 1
        if calls[0] == 12:
            with torch.no_grad():
                next(model.parameters()).view(-1)[0] = math.nan
        return stats

    monkeypatch.setattr(Backprop, "step", step)
    with pytest.raises(TrainingDiverged, match=r"plant step 12: parameter \S+ became non-finite.*step_0000006"):
        whitebox.run(parse_config(TINY), out=tmp_path / "run")
    _assert_last_good(tmp_path / "run", "step_0000006")


def _assert_last_good(run_dir: Path, name: str) -> None:
    from whitebox.models import build_model
    from whitebox.runner import resolve_config

    kept = list_checkpoints(run_dir / "checkpoints" / "plant")
    assert kept[-1].name == name
    cfg = resolve_config(parse_config(TINY))
    model = build_model(cfg.model, get_task(cfg.task).vocabulary())
    with torch.random.fork_rng():
        load_checkpoint(kept[-1], model, Backprop(model, cfg.training, torch.device("cpu")))
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_a_record_cut_by_a_kill_is_dropped_when_the_run_starts_again(tiny, tmp_path):
    """A torn last line of metrics.jsonl (no newline) is dropped on start, so the next record is not glued to it."""
    from whitebox.runtime.tracking import Tracker

    tracker = Tracker(tmp_path, tiny)
    tracker.log("plant", 1, {"x": 1.0})
    with open(tracker.metrics_path, "a") as f:
        f.write('{"stage": "plant", "step": 2, "x"')
    Tracker(tmp_path, tiny).start("cpu").log("plant", 2, {"x": 2.0})
    assert [json.loads(line)["step"] for line in tracker.metrics_path.read_text().splitlines()] == [1, 2]


def test_nothing_is_ever_unpickled():
    """Only safetensors and JSON are read; torch.load only with weights_only=True; no pickle, no allow_pickle."""
    found = []
    for path in [*ROOT.glob("whitebox/**/*.py"), *ROOT.glob("scripts/*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if ("torch.load(" in code and "weights_only=True" not in code) or "allow_pickle=True" in code \
                    or any(f"import {m}" in code or f"{m}.load" in code for m in ("pickle", "dill", "joblib", "cloudpickle")):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []
