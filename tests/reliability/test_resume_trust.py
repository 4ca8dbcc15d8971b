"""Resume trusts nothing it reads: an edited config.yaml, a foreign or edited checkpoint is refused naming the field;
a changed setting goes in as a recorded amendment, and the divergence message's command works."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import whitebox
from tests.conftest import TINY, one_thread
from tests.reliability.interrupted import IN_SECOND_CELL, copy_of, files, killed_run, refused, treat_config
from whitebox.cli.main import main
from whitebox.config import parse_config
from whitebox.runtime.artifacts import sha256_json
from whitebox.runtime.records import results
from whitebox.training.backprop import lr_factor


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def plant_run(tmp_path_factory):
    """The tiny plant run killed at step 15 of 24: checkpoints step_6 and step_12 kept."""
    return killed_run(tmp_path_factory.mktemp("plant"), TINY, 15)


@pytest.fixture(scope="module")
def treat_run(tmp_path_factory):
    """The tiny treat run killed in its second cell (es-present): plant, locate and sft-present are finished."""
    return killed_run(tmp_path_factory.mktemp("treat"), treat_config(), IN_SECOND_CELL)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    with one_thread():
        return whitebox.run(parse_config(TINY), out=tmp_path_factory.mktemp("reference") / "run")


def _edit_config(run_dir, key, value):
    path = run_dir / "config.yaml"
    data = yaml.safe_load(path.read_text())
    section, name = key.split(".")
    data[section][name] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


EDITS = [("run.seed", 1), ("training.lr", 0.001), ("training.steps", 30), ("model.d_model", 32), ("task.n_train", 128),
         ("training.batch_size", 16), ("training.grad_clip", None), ("task.trigger_rate", 0.3)]


@pytest.mark.parametrize(("key", "value"), EDITS, ids=[k for k, _ in EDITS])
def test_an_edited_config_is_refused_mid_plant_naming_the_key(plant_run, tmp_path, capsys, key, value):
    """config.yaml edited while plant was interrupted: --resume exits 2 with one line naming the key; no file changes."""
    run_dir = copy_of(plant_run, tmp_path)
    _edit_config(run_dir, key, value)
    before = files(run_dir)
    line = refused(capsys, ["run", "--resume", str(run_dir)], f"config.yaml: {key} is", "env.json")
    assert ("--set" in line) == (key in ("training.lr", "training.grad_clip"))  # an amendment is offered where allowed
    assert files(run_dir) == before


@pytest.mark.parametrize(("key", "value"), [("run.seed", 1), ("treat.lr", 0.02), ("locate.n_fit", 50)])
def test_an_edited_config_is_refused_mid_treat(treat_run, tmp_path, capsys, key, value):
    """The same mid-treat, where plant and locate are finished and read back."""
    run_dir = copy_of(treat_run, tmp_path)
    _edit_config(run_dir, key, value)
    before = files(run_dir)
    refused(capsys, ["run", "--resume", str(run_dir)], f"{key} is")
    assert files(run_dir) == before


def test_a_checkpoint_of_another_run_is_refused(plant_run, tmp_path, capsys, reference):
    """Another run's step_0000018 (same config, different run) copied into checkpoints/plant: refused naming 'owner'."""
    run_dir = copy_of(plant_run, tmp_path)
    other = whitebox.run(parse_config(TINY), out=tmp_path / "other")
    assert results(other) == results(reference)
    shutil.copytree(tmp_path / "other" / "checkpoints" / "plant" / "step_0000018", run_dir / "checkpoints" / "plant" / "step_0000018")
    before = files(run_dir)
    refused(capsys, ["run", "--resume", str(run_dir)], "step_0000018", "field 'owner'", "delete")
    assert files(run_dir) == before


def test_a_checkpoint_of_another_stage_of_the_same_run_is_refused(treat_run, tmp_path, capsys):
    """plant's own step_0000024 copied into the interrupted es-present cell: same run and config, refused naming
    'owner.stage'."""
    run_dir = copy_of(treat_run, tmp_path)
    cell = run_dir / "treat" / "es-present" / "checkpoints"
    shutil.copytree(run_dir / "checkpoints" / "plant" / "step_0000024", cell / "step_0000024")
    before = files(run_dir)
    refused(capsys, ["run", "--resume", str(run_dir)], "field 'owner.stage'", "checkpoints/plant")
    assert {k: v for k, v in files(run_dir).items() if not k.startswith("plots/")} == {
        k: v for k, v in before.items() if not k.startswith("plots/")}


def _edit_checkpoint(run_dir, rehash, **fields):
    path = run_dir / "checkpoints" / "plant" / "step_0000012" / "checkpoint.json"
    meta = json.loads(path.read_text())
    meta.update(fields)
    if rehash:  # as a tester who knows the format would
        meta["meta_sha256"] = sha256_json({k: meta.get(k) for k in ("format_version", "step", "spent", "owner", "sha256")})
    path.write_text(json.dumps(meta))


def test_an_edited_checkpoint_step_is_refused_naming_the_field(plant_run, tmp_path_factory, capsys, figures):
    """checkpoint.json's step set to any other value (1e20, 0, negative...), its hash recomputed or not (hypothesis):
    --resume refuses in one line naming the checkpoint and the field, and changes no file."""
    refusals = [0]

    @settings(max_examples=12, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(step=st.one_of(st.integers(min_value=-5, max_value=10**21), st.sampled_from([10**20, 0, 6, 24, 25])),
           rehash=st.booleans())
    def check(step, rehash):
        if step == 12:
            return
        run_dir = copy_of(plant_run, tmp_path_factory.mktemp("edit"))
        _edit_checkpoint(run_dir, rehash, step=step)
        before = files(run_dir)
        refused(capsys, ["run", "--resume", str(run_dir)], "step_0000012", "'step'")
        assert files(run_dir) == before
        refusals[0] += 1

    check()
    figures(parser="resume with checkpoint.json's step edited", cases=refusals[0], accepted=0, rejected=refusals[0],
            other_exceptions=0, files_written=0)


@pytest.mark.parametrize("fields", [{"spent": {"forward_equivalents": 1, "examples": 1}}, {"owner": None},
                                    {"format_version": 1}, {"spent": {"forward_equivalents": -1}}],
                         ids=["spent", "owner-removed", "old-format", "negative-spent"])
def test_other_edited_checkpoint_fields_are_refused(plant_run, tmp_path, capsys, fields):
    """The budget spent, the owner or the format edited: refused, naming the checkpoint."""
    run_dir = copy_of(plant_run, tmp_path)
    _edit_checkpoint(run_dir, False, **fields)
    refused(capsys, ["run", "--resume", str(run_dir)], "step_0000012")


def test_an_amended_lr_continues_from_the_checkpoint_and_is_recorded(plant_run, tmp_path, capsys):
    """--resume --set training.lr=0.001: the interrupted stage itself trains on with it; env.json records the change."""
    run_dir = copy_of(plant_run, tmp_path)
    assert main(["run", "--resume", str(run_dir), "--set", "training.lr=0.001"]) == 0
    assert "amended" in capsys.readouterr().out
    env = json.loads((run_dir / "env.json").read_text())
    (amendment,) = env["amendments"]
    assert amendment["changes"] == {"training.lr": {"from": 0.003, "to": 0.001}}
    assert amendment["from_checkpoint"] == {"checkpoint": "checkpoints/plant/step_0000012", "step": 12}
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["training"]["lr"] == 0.001
    cfg = parse_config(TINY, ["training.lr=0.001"]).training
    lrs = {r["step"]: r["train/lr"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
           if "train/lr" in r}
    assert all(math.isclose(lrs[s], 0.001 * lr_factor(s - 1, cfg)) for s in lrs if s > 12)
    assert all(math.isclose(lrs[s], 0.003 * lr_factor(s - 1, parse_config(TINY).training)) for s in lrs if s <= 12)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "complete"
    assert main(["run", "--resume", str(run_dir)]) == 0  # the amended config is now the run's own


@pytest.mark.parametrize("item", ["run.seed=1", "model.d_model=32", "task.n_train=64", "training.steps=30",
                                  "experiment=locate", "training.lr=-1", "nosuch.key=1"])
def test_an_amendment_of_a_key_that_may_not_change_is_refused(plant_run, tmp_path, capsys, item):
    """--resume --set of the seed, the model, the task, the schedule's length, or an invalid value: one line, no change."""
    run_dir = copy_of(plant_run, tmp_path)
    before = files(run_dir)
    refused(capsys, ["run", "--resume", str(run_dir), "--set", item], item.partition("=")[0])
    assert files(run_dir) == before


def test_the_divergence_message_names_a_command_that_continues(tmp_path, tiny_yaml, monkeypatch, capsys):
    """inf loss at step 9: the message gives `whitebox run --resume D --set training.lr=...`; that command completes."""
    import whitebox.protocol.plant

    real, calls = whitebox.protocol.plant.supervised, [0]

    def poisoned(model, batch):
        calls[0] += 1
        return real(model, batch) * math.inf if calls[0] == 9 else real(model, batch)

    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(whitebox.protocol.plant, "supervised", poisoned)
        line = refused(capsys, ["run", str(tiny_yaml), "--out", str(run_dir)], "step_0000006", code=1)
    command = line.split("`")[1]
    assert command == f"whitebox run --resume {run_dir} --set training.lr=0.0015"
    assert main(command.split()[1:]) == 0
    env = json.loads((run_dir / "env.json").read_text())
    assert env["amendments"][0]["from_checkpoint"]["step"] == 6


@pytest.mark.slow
def test_the_fault_script_tamper_trials_are_refused_then_resume(tmp_path, figures):
    """One trial of each tampering in scripts/fault_injection.py: refused in one line, files kept, then equal results."""
    from tests.reliability.interrupted import fault_script

    result = fault_script().run_trials(0, seed=0, work=tmp_path, tampered=1)
    assert [r["problems"] for r in result["results"]] == [[]] * 3
    figures(**{k: v for k, v in result.items() if k != "results"})


def test_a_grid_cell_takes_its_parents_amendment_and_refuses_other_changes(plant_run, tmp_path):
    """run_or_resume (how a grid resumes its cells) with the parent's amended lr: amended and recorded; with another
    seed: refused naming run.seed."""
    from whitebox.config import ConfigError
    from whitebox.runner import run_or_resume

    run_dir = copy_of(plant_run, tmp_path)
    with pytest.raises(ConfigError, match=r"run\.seed cannot change"):
        run_or_resume(parse_config(TINY, ["run.seed=3"]), run_dir)
    summary = run_or_resume(parse_config(TINY, ["training.lr=0.001"]), run_dir)
    assert summary["status"] == "complete"
    changes = json.loads((run_dir / "env.json").read_text())["amendments"][0]["changes"]
    assert changes == {"training.lr": {"from": 0.003, "to": 0.001}}
