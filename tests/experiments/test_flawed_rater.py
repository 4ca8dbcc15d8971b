import math
from pathlib import Path

import pytest

import whitebox
from tests.conftest import one_thread
from whitebox.config import ConfigError, load_config, parse_config
from whitebox.report.plots import read_metrics

NAMES = ("L0.mid", "L0.post")  # a 1-layer model; block 0's input at the answer position reads nothing
MEASURES = (
    "honest_acc", "blind_honest_acc", "lie_rate", "truth_probe_acc_best", "truth_probe_acc_lies_best",
    "truth_probe_excess_best", "detector_auroc_best", "knows_says_auroc_best",
    *(f"{key}.{name}" for key in ("truth_probe_acc", "detector_auroc", "knows_says_auroc") for name in NAMES),
)
TINY_RATER = {
    "experiment": "flawed_rater",
    "run": {"name": "rater", "seed": 0},
    "model": {"n_layers": 1, "d_model": 16, "n_heads": 2, "d_mlp": 32},
    "task": {"name": "flawed_rater", "seq_len": 3, "n_values": 6, "n_train": 256, "n_eval": 64},
    "training": {"steps": 30, "batch_size": 32, "lr": 1e-2, "warmup_steps": 0, "eval_every": 15,
                 "checkpoint_every": 15, "device": "cpu"},
    "locate": {"n_fit": 64, "n_test": 64},
    "treat": {"batch_size": 16, "lr": 1e-2, "es": {"population": 4}},
    "deception": {"deceivers": ["rl", "es"], "fixers": ["sft", "rl", "es"], "deceive_budget": 480, "fix_budget": 192,
                  "eval_points": 2, "n_deceive": 128, "n_trusted": 32},
    "tracking": {"wandb_mode": "disabled"},
}


@pytest.fixture(scope="module")
def rater_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("rater") / "run"
    with one_thread():
        yield run_dir, whitebox.run(parse_config(TINY_RATER), out=run_dir)


def test_pipeline_reports_every_measure_of_every_phase(rater_run):
    run_dir, summary = rater_run
    assert summary["status"] == "complete"
    for key in ("honest_acc", "blind_honest_acc", "lie_rate", "loss"):
        assert f"plant.{key}" in summary
    prefixes = ["start.honest", *(f"deceive.{d}" for d in ("rl", "es")),
                *(f"fix.{f}.{d}" for f in ("sft", "rl", "es") for d in ("rl", "es")),
                *(f"control.{f}" for f in ("sft", "rl", "es"))]
    for prefix in prefixes:
        missing = [m for m in MEASURES if f"{prefix}.{m}" not in summary]
        assert not missing, (prefix, missing)
    for name in NAMES:
        assert 0 <= summary[f"start.fresh.truth_probe_acc.{name}"] <= 1
    assert "start.fresh.truth_probe_acc_best" in summary
    assert not any(".L0.pre" in key for key in summary)
    assert summary["start.honest.detector_auroc_best"] == summary["start.honest.knows_says_auroc_best"] == 0.5  # itself
    assert (run_dir / "plots" / "flawed_rater.png").stat().st_size > 10_000


def test_every_cell_is_measured_over_its_budget_and_resumable(rater_run):
    run_dir, summary = rater_run
    cells = {"deceive/rl": 480, "deceive/es": 480, **{f"fix/{f}-{d}": 192 for f in ("sft", "rl", "es") for d in ("rl", "es")},
             **{f"control/{f}": 192 for f in ("sft", "rl", "es")}}
    for stage, budget in cells.items():
        evals = [r for r in read_metrics(run_dir / "metrics.jsonl", stage) if "eval/lie_rate" in r]
        spent = [r["budget/forward_equivalents"] for r in evals]
        assert len(evals) == 3 and spent[0] == 0 and spent[-1] >= budget, (stage, spent)
        assert (run_dir / stage / "result.json").is_file() and (run_dir / stage / "model").is_dir()
    assert not math.isnan(summary["deceive.rl.lie_rate"])
    path = run_dir / "summary.json"  # as if killed after the last cell: resuming reuses every finished cell
    path.write_text(path.read_text().replace('"status": "complete"', '"status": "running"'))
    resumed = whitebox.resume(run_dir)
    assert resumed["status"] == "complete"
    phases = ("deceive.", "fix.", "control.")
    assert {k: v for k, v in resumed.items() if k.startswith(phases)} == pytest.approx(
        {k: v for k, v in summary.items() if k.startswith(phases)}, nan_ok=True)


def test_the_control_starts_from_the_honest_model_and_can_be_left_out(rater_run, tmp_path):
    run_dir, summary = rater_run
    first = [r for r in read_metrics(run_dir / "metrics.jsonl", "control/sft") if "eval/lie_rate" in r][0]
    assert first["eval/lie_rate"] == summary["start.honest.lie_rate"]  # step 0 of the control is the honest model
    assert first["eval/detector_auroc_best"] == 0.5  # against itself
    with one_thread():
        lean = whitebox.run(parse_config(TINY_RATER, ["deception.control=false", "deception.fixers=[sft]",
                                                      "deception.deceivers=[rl]"]), out=tmp_path / "lean")
    assert not any(k.startswith("control.") for k in lean) and "fix.sft.rl.lie_rate" in lean


def test_flawed_rater_needs_its_task_and_a_rewarded_es(tmp_path):
    with pytest.raises(ConfigError, match="has no flawed rater; the flawed_rater experiment needs one"):
        whitebox.run(parse_config({**TINY_RATER, "task": {"name": "backdoor"}}), out=tmp_path / "a")
    with pytest.raises(ConfigError, match="es deceiver"):
        whitebox.run(parse_config(TINY_RATER, ["treat.es.feedback=supervised"]), out=tmp_path / "b")


def test_the_shipped_config_is_valid_and_cpu_sized():
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "flawed_rater.yaml")
    assert (cfg.experiment, cfg.task.name, cfg.model.n_layers, cfg.model.d_model) == ("flawed_rater", "flawed_rater", 2, 64)
    assert cfg.deception.deceivers == ["rl", "es"] and cfg.deception.fixers == ["sft", "rl", "es"]
