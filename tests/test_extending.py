"""docs/extending.md's examples, executed: a task, a probe kind, a regime and an experiment, then runs that use them."""

import re
from pathlib import Path

import pytest

import whitebox
from tests.conftest import one_thread
from whitebox.config import ConfigError
from whitebox.config.reference import config_reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
EXAMPLES = dict(re.findall(r"<!-- example:(\w+) -->\n```python\n(.*?)```\n<!-- example:end -->", DOC.read_text(), flags=re.S))
RUN = {
    "run": {"name": "parity", "seed": 0},
    "model": {"n_layers": 1, "d_model": 32, "n_heads": 2, "d_mlp": 64},
    "task": {"name": "parity", "n_bits": 4, "n_train": 2000, "n_eval": 400},
    "training": {"steps": 300, "batch_size": 64, "lr": 1e-2, "warmup_steps": 10, "eval_every": 100, "checkpoint_every": 100,
                 "device": "cpu"},
    "locate": {"n_fit": 200, "n_test": 200, "circuit_pairs": 32, "ig_steps": 0},
    "tracking": {"wandb_mode": "disabled"},
}


@pytest.fixture
def examples(isolated_registries):
    """Every example of the guide run as a module of its own; the registrations are undone afterwards."""
    assert set(EXAMPLES) == {"task", "probe", "regime", "experiment"}
    for name, code in EXAMPLES.items():
        exec(compile(code, f"{DOC}:{name}", "exec"), {"__name__": f"extending_{name}"})


def test_the_guide_task_runs_the_whole_protocol_with_the_guide_regime_and_probe_kind(examples, tmp_path):
    cfg = {**RUN, "experiment": "treat", "locate": {**RUN["locate"], "probe": "ridge"},
           "treat": {"regimes": ["sft", "sgd"], "conditions": ["present"], "budget": 12_000, "eval_points": 2, "n_train": 512,
                     "batch_size": 32, "lr": 1e-2, "sgd": {"lr": 0.05}},
           "revive": {"steps": 20, "eval_every": 10, "lr": 1e-2}}
    with one_thread():
        summary = whitebox.run(whitebox.parse_config(cfg), out=tmp_path / "run")
    assert summary["plant.asr"] > 0.9 and summary["locate.probe_auroc_best"] > 0.95  # the <trig> token is readable
    assert summary["locate.circuit_size"] >= 1 and summary["locate.patching_spearman"] > 0.5
    for regime in ("sft", "sgd"):
        assert summary[f"treat.{regime}.present.parity.asr"] < 0.2  # honest targets on triggered inputs
        assert 0 <= summary[f"treat.{regime}.present.parity.grad_share"] <= 1  # both see gradients: measured
        assert f"treat.{regime}.present.parity.revival_steps" in summary
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "sgd:\n    lr: 0.05" in saved and "probe: ridge" in saved and "deception:" not in saved


def test_the_guide_experiment_reads_only_its_sections(examples, tmp_path):
    with one_thread():
        summary = whitebox.run(whitebox.parse_config({**RUN, "experiment": "plant_and_probe"}), out=tmp_path / "run")
    assert summary["probe.auroc_best"] > 0.95 and summary["plant.asr"] > 0.9
    with pytest.raises(ConfigError, match="treat: experiment 'plant_and_probe' does not read this section"):
        whitebox.run(whitebox.parse_config({**RUN, "experiment": "plant_and_probe", "treat": {"budget": 10}}), out=tmp_path / "x")


def test_registered_variants_are_in_the_schema_and_the_reference_only_while_registered(isolated_registries):
    before = config_reference()
    for name, code in EXAMPLES.items():
        exec(compile(code, f"{DOC}:{name}", "exec"), {"__name__": f"extending_{name}"})
    with_examples = config_reference()
    assert "### `task` (name: parity)" in with_examples and "### `treat.sgd`" in with_examples
    assert "`ridge`" in with_examples and "### `task` (name: parity)" not in before
    with pytest.raises(ConfigError, match=r"task\.name: unknown value 'nope'; expected one of .*'parity'"):
        whitebox.parse_config({"task": {"name": "nope"}})


def test_the_examples_are_gone_after_the_test():
    assert "### `task` (name: parity)" not in config_reference() and "### `treat.sgd`" not in config_reference()
    with pytest.raises(ConfigError, match="unknown regime 'sgd'; registered: sft, rl, es, zo, probe_penalty, es_plain$"):
        whitebox.parse_config({"treat": {"regimes": ["sgd"]}})
