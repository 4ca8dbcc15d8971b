from pathlib import Path

import pytest
import yaml

import whitebox
from tests.conftest import TINY, one_thread
from whitebox.config import ConfigError
from whitebox.runner import find_experiment


def test_a_section_the_experiment_does_not_read_is_refused_before_anything_is_written(tmp_path):
    cfg = whitebox.parse_config({**TINY, "treat": {"budget": 100}})  # plant reads model, task and training only
    with pytest.raises(ConfigError, match=r"^treat: experiment 'plant' does not read this section \(it reads model, task, "
                                          r"training\); remove it from the config$"):
        whitebox.run(cfg, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_saved_config_holds_only_the_sections_the_experiment_reads(tmp_path):
    with one_thread():
        whitebox.run(whitebox.parse_config(TINY), out=tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert list(saved) == ["experiment", "run", "model", "task", "training", "tracking"]
    assert saved["model"]["d_vocab"] == 13  # resolved from the task: 10 values, <bos>, '=' and <trig>
    assert whitebox.load_config(tmp_path / "run" / "config.yaml").training.steps == TINY["training"]["steps"]


def test_every_built_in_experiment_reads_the_sections_its_configs_set():
    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert len(configs) >= 8
    for path in configs:
        cfg = whitebox.load_config(path)
        find_experiment(cfg.experiment).validate(cfg)  # raises on a section the experiment would ignore
