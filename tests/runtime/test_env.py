import pytest

from whitebox.config import ConfigError
from whitebox.runtime.artifacts import sha256_json
from whitebox.runtime.env import amendable, amendment, differences, expected_config, owner
from whitebox.runtime.rundir import RunDir


def test_differences_name_every_changed_dotted_key():
    before = {"run": {"seed": 0}, "training": {"lr": 0.1, "betas": [0.9, 0.98]}}
    after = {"run": {"seed": 1}, "training": {"lr": 0.1, "betas": [0.9, 0.99]}, "extra": 1}
    assert differences(before, after) == {"run.seed": (0, 1), "training.betas": ([0.9, 0.98], [0.9, 0.99]),
                                          "extra": (None, 1)}


@pytest.mark.parametrize(("key", "allowed"), [("training.lr", True), ("tracking.wandb_mode", True), ("treat.lr", True),
                                              ("training.steps", False), ("run.seed", False), ("training.lr_x", False)])
def test_only_settings_that_change_how_training_proceeds_are_amendable(key, allowed):
    assert amendable(key) is allowed


def test_the_expected_config_is_the_start_amended_in_order_and_the_owner_knows_every_hash(tmp_path):
    start = {"training": {"lr": 0.1, "grad_clip": 1.0}}
    first = amendment(RunDir(tmp_path), start, {"training": {"lr": 0.05, "grad_clip": 1.0}}, [])
    env = {"run_id": "abc", "config": start, "config_sha256": sha256_json(start), "amendments": [first]}
    second = amendment(RunDir(tmp_path), expected_config(env), {"training": {"lr": 0.05, "grad_clip": 0.5}}, [])
    env["amendments"].append(second)
    assert expected_config(env) == {"training": {"lr": 0.05, "grad_clip": 0.5}}
    assert start == {"training": {"lr": 0.1, "grad_clip": 1.0}}  # the record of the start is left as it was
    assert owner(env).configs == (sha256_json(start), first["config_sha256"], second["config_sha256"])
    assert first["from_checkpoint"] is None  # no checkpoint yet


def test_an_amendment_of_the_seed_names_the_override(tmp_path):
    with pytest.raises(ConfigError, match=r"--set run.seed=2: run.seed cannot change"):
        amendment(RunDir(tmp_path), {"run": {"seed": 0}}, {"run": {"seed": 2}}, ["run.seed=2"])
