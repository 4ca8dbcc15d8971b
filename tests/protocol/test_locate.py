import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import whitebox
from tests.conftest import TINY
from whitebox.cli.main import main
from whitebox.config import parse_config
from whitebox.probes import load_probe

README = Path(__file__).resolve().parents[2] / "README.md"
LOCATE = {**TINY, "experiment": "locate", "model": {**TINY["model"], "n_layers": 2},
          "training": {**TINY["training"], "steps": 60, "lr": 1e-2},
          "locate": {"n_fit": 200, "n_test": 100, "circuit_pairs": 32, "ig_steps": 4}}


@pytest.fixture(scope="module")
def located(tmp_path_factory):
    root = tmp_path_factory.mktemp("locate")
    run_dir = root / "runs" / "quickstart"
    summary = whitebox.run(parse_config(LOCATE), out=run_dir)
    return root, run_dir, summary


def test_locate_writes_probes_detectors_circuit_and_summary(located):
    _, run_dir, summary = located
    for key in ("probe_auroc_best", "probe_hook_best", "fresh_probe_auroc_best", "detector_auroc_best",
                "patching_spearman", "circuit_size", "ablation_asr", "ablation_clean_acc", "complement_ablation_asr"):
        assert f"locate.{key}" in summary
    rows = json.loads((run_dir / "probes" / "table.json").read_text())
    assert [r["name"] for r in rows] == ["L0.pre", "L0.mid", "L0.post", "L1.mid", "L1.post"]
    best = max(rows, key=lambda r: r["auroc"])
    assert summary["locate.probe_auroc_best"] == best["auroc"] and summary["locate.probe_hook_best"] == best["hook"]
    assert rows[0]["auroc"] == 0.5  # the answer position's own embedding cannot know the trigger
    for r in rows:
        probe = load_probe(run_dir / "probes" / r["hook"])
        assert probe.hook == r["hook"] and probe.metrics["auroc"] == r["auroc"]
        assert (run_dir / "detectors" / r["hook"] / "detector.json").is_file()
        assert abs(r["control_auroc"] - 0.5) < 0.15
    assert (run_dir / "circuit" / "circuit.json").is_file()
    for plot in ("probe_auroc.png", "circuit_scores.png", "plant.png"):
        assert (run_dir / "plots" / plot).stat().st_size > 10_000
    locate_records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                      if '"locate"' in line]
    assert len(locate_records) == 1 and locate_records[0]["probe_auroc_best"] == summary["locate.probe_auroc_best"]


def test_readme_probe_example_runs_in_a_fresh_process(located):
    """The README's example, verbatim, against a run laid out like the quickstart's."""
    root, _, _ = located
    code = re.search(r"<!-- probe-example:start -->\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("logistic blocks.1.hook_out last 16")
    assert lines[-1].startswith("tensor([") and len(lines) >= 3


def test_probe_cli_fit_then_eval(located, tmp_path, capsys, tiny_yaml):
    _, run_dir, _ = located
    planted = str(run_dir / "models" / "planted")
    assert main(["probe", "fit", str(tiny_yaml), "--set", f"locate.checkpoint={planted}", "--set", "locate.n_fit=100",
                 "--set", "locate.n_test=60", "--out", str(tmp_path / "p")]) == 0
    printed = capsys.readouterr().out
    assert "L0.post" in printed and "probe_auroc_best" in printed
    assert main(["probe", "eval", str(tmp_path / "p" / "probes" / "blocks.0.hook_out"), "--checkpoint", planted,
                 "--n", "300", "--seed", "5"]) == 0
    scored = capsys.readouterr().out
    auroc = float(re.search(r"auroc\s+([0-9.]+)", scored).group(1))
    assert 0.0 <= auroc <= 1.0 and "n                   300" in scored


def test_probe_eval_refuses_another_model(located, tmp_path, capsys):
    _, run_dir, _ = located
    other = tmp_path / "other"
    whitebox.run(parse_config({**TINY, "model": {**TINY["model"], "d_model": 8}}), out=other)
    probe_dir = run_dir / "probes" / "blocks.0.hook_out"
    assert main(["probe", "eval", str(probe_dir), "--checkpoint", str(other / "models" / "planted")]) == 2
    err = capsys.readouterr().err
    assert "fitted on a different model" in err and "pass --allow-fingerprint-mismatch to use it anyway" in err
    assert main(["probe", "eval", str(probe_dir), "--checkpoint", str(run_dir / "models" / "planted"), "--data", "x.jsonl"]) == 2
    assert "is a whitebox model, scored on fresh data of the task it was trained on; drop --data" in capsys.readouterr().err


def test_probe_fit_needs_a_checkpoint(capsys, tiny_yaml):
    assert main(["probe", "fit", str(tiny_yaml)]) == 2
    assert "locate.checkpoint" in capsys.readouterr().err


def test_probe_eval_on_another_checkpoint_when_allowed_prints_the_override(located, tmp_path, capsys):
    _, run_dir, _ = located
    other = tmp_path / "reseeded"
    whitebox.run(parse_config({**TINY, "run": {**TINY["run"], "seed": 1}}), out=other)
    probe_dir = run_dir / "probes" / "blocks.0.hook_out"
    with pytest.warns(UserWarning, match="fitted on a different model"):
        assert main(["probe", "eval", str(probe_dir), "--checkpoint", str(other / "models" / "planted"), "--n", "64",
                     "--allow-fingerprint-mismatch"]) == 0
    assert re.search(r"fingerprint_override\s+\S+probe.json: fitted on a different model", capsys.readouterr().out)
