import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import whitebox
from tests.conftest import one_thread
from whitebox.config import ConfigError, load_config
from whitebox.runner import find_experiment, resolve_config, resolve_device
from whitebox.runtime.records import results


def _records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in lines]


def test_run_writes_the_run_directory(tiny, tmp_path):
    summary = whitebox.run(tiny, out=tmp_path / "r")
    run_dir = tmp_path / "r"
    assert summary == json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete" and {"plant.clean_acc", "plant.asr", "plant.loss"} <= set(summary)
    assert load_config(run_dir / "config.yaml") == resolve_config(tiny)
    env = json.loads((run_dir / "env.json").read_text())
    assert env["seed"] == 0 and env["device"] == "cpu" and env["versions"]["torch"]
    assert env["git"] is None or len(env["git"]["commit"]) == 40
    assert (run_dir / "models" / "planted" / "model.safetensors").is_file()
    assert (run_dir / "plots" / "plant.png").is_file()
    assert [p.name for p in sorted((run_dir / "checkpoints" / "plant").iterdir())] == ["step_0000018", "step_0000024"]
    steps = [r["step"] for r in _records(run_dir) if "eval/asr" in r]
    assert steps == [0, 6, 12, 18, 24]


def test_same_seed_same_metrics_other_seed_differs(tiny, tmp_path):
    whitebox.run(tiny, out=tmp_path / "a")
    whitebox.run(tiny, out=tmp_path / "b")
    whitebox.run(tiny, ["run.seed=1"], out=tmp_path / "c")
    assert _records(tmp_path / "a") == _records(tmp_path / "b")
    assert _records(tmp_path / "a") != _records(tmp_path / "c")


def test_resume_of_a_complete_run_changes_nothing(tiny, tmp_path, capsys):
    summary = whitebox.run(tiny, out=tmp_path / "r")
    before = (tmp_path / "r" / "metrics.jsonl").read_text()
    assert whitebox.resume(tmp_path / "r") == summary
    assert "already complete" in capsys.readouterr().out
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == before


def test_unknown_experiment(tiny):
    with pytest.raises(ConfigError, match="unknown experiment 'nope'; registered: .*plant"):
        find_experiment("nope")
    with pytest.raises(ConfigError, match="cannot import"):
        find_experiment("no_such_module:run")


def test_explicit_sizes_must_fit_the_task(tiny):
    with pytest.raises(ConfigError, match="model.n_ctx: 3 is shorter"):
        resolve_config(tiny.model_copy(update={"model": tiny.model.model_copy(update={"n_ctx": 3})}))


def test_sigkill_then_resume_gives_the_uninterrupted_result(tiny_yaml, tmp_path):
    """A run killed without warning half-way finishes, after --resume, with the same metrics."""
    overrides = ["training.steps=300", "training.checkpoint_every=40", "training.eval_every=50"]
    with one_thread():  # the killed process and both in-process runs on one thread: the same rounding
        reference = whitebox.run(tiny_yaml, overrides, out=tmp_path / "reference")

    run_dir = tmp_path / "killed"
    args = [sys.executable, "-m", "whitebox", "run", str(tiny_yaml), "--out", str(run_dir)]
    proc = subprocess.Popen(args + [a for o in overrides for a in ("--set", o)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = run_dir / "checkpoints" / "plant"
    deadline = time.time() + 120
    while not (checkpoints / "step_0000120").is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "running"

    with one_thread():
        resumed = whitebox.resume(run_dir)
    assert results(resumed) == results(reference)
    assert resumed["timing.total"] > 0 and reference["timing.total"] > 0  # wall time, this process: not compared
    assert _records(run_dir) == _records(tmp_path / "reference")


def test_under_torchrun_a_gpu_index_is_refused_and_the_cpu_is_kept(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ConfigError, match="every torchrun process on one GPU; use cuda or auto"):
        resolve_device("cuda:1")
    assert resolve_device("cpu") == torch.device("cpu")


def test_plugins_are_imported_from_their_entry_point_group_and_a_broken_one_is_one_line(monkeypatch):
    from importlib import metadata

    import whitebox.variants as runner

    loaded = []
    good = metadata.EntryPoint("good", "json", runner.PLUGIN_GROUP)
    broken = metadata.EntryPoint("broken", "whitebox_no_such_module", runner.PLUGIN_GROUP)
    monkeypatch.setattr(metadata.EntryPoint, "load", lambda ep: loaded.append(ep.name) or __import__(ep.value))
    monkeypatch.setattr(runner.metadata, "entry_points", lambda group: [good] if group == runner.PLUGIN_GROUP else [])
    runner.load_plugins()
    assert loaded == ["good"]
    monkeypatch.setattr(runner.metadata, "entry_points", lambda group: [broken] if group == runner.PLUGIN_GROUP else [])
    with pytest.raises(ConfigError, match=r"^plugin 'broken' \(whitebox_no_such_module\) failed to import: No module named"):
        runner.load_plugins()
