import json
import subprocess
import sys
from pathlib import Path

import pytest

from whitebox.cli.main import main


def _fails(capsys, argv, code=2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    return err


def test_bad_set_key(capsys, tiny_yaml):
    err = _fails(capsys, ["run", str(tiny_yaml), "--set", "training.lrr=1"])
    assert err.startswith("whitebox: error: --set training.lrr=1: unknown key 'training.lrr'")


def test_bad_value_and_missing_file(capsys, tiny_yaml, tmp_path):
    assert "training.batch_size" in _fails(capsys, ["run", str(tiny_yaml), "--set", "training.batch_size=-1"])
    assert "config file not found" in _fails(capsys, ["run", str(tmp_path / "missing.yaml")])


def test_resume_needs_a_run_directory(capsys, tmp_path):
    assert "no config.yaml here" in _fails(capsys, ["run", "--resume", str(tmp_path)])


def test_usage_errors_exit_2(capsys, tiny_yaml):
    with pytest.raises(SystemExit) as exit_:
        main(["run"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--resume", "x", str(tiny_yaml)])
    assert exit_.value.code == 2 and "takes no CONFIG" in capsys.readouterr().err


def test_help_lists_run(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0 and "run" in capsys.readouterr().out


def test_existing_run_directory_is_refused(capsys, tiny_yaml, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "something").write_text("x")
    assert "already exists and is not empty" in _fails(capsys, ["run", str(tiny_yaml), "--out", str(out)])
    (out / "config.yaml").write_text("x")  # a run's first file: the way on is to resume it
    assert f"--resume {out}" in _fails(capsys, ["run", str(tiny_yaml), "--out", str(out)])


def test_hand_broken_yaml_in_a_fresh_process(tmp_path):
    """What a user sees: one line on stderr, exit 2, no traceback."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  n_layers: 2\n   d_model: 64\n")
    proc = subprocess.run([sys.executable, "-m", "whitebox", "run", str(broken)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"whitebox: error: {broken} line 3") and "malformed YAML" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and proc.stdout == ""


def test_run_prints_summary_and_writes_it(capsys, tiny_yaml, tmp_path):
    out = tmp_path / "run"
    assert main(["run", str(tiny_yaml), "--out", str(out), "--set", "training.steps=6"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and "plant.clean_acc" in printed
    assert f"{summary['plant.asr']:.4f}" in printed


def test_a_long_summary_is_cut_with_a_pointer_to_the_file():
    from whitebox.cli.main import format_summary

    summary = {f"k{i}": float(i) for i in range(5)}
    lines = format_summary(summary, limit=3, path=Path("run/summary.json")).splitlines()
    assert lines == ["summary", "  k0  0.0000", "  k1  1.0000", "  k2  2.0000", "  ... 2 more in run/summary.json"]
    assert format_summary(summary).count("\n") == 5  # no limit: every key
