import pytest
import torch

from whitebox.config import TrainingConfig
from whitebox.runtime.artifacts import ArtifactError
from whitebox.training.backprop import Backprop
from whitebox.training.checkpoints import list_checkpoints, load_checkpoint, save_checkpoint


def _setup(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    return model, Backprop(model, TrainingConfig(warmup_steps=0), torch.device("cpu"))


def _step(model, updater):
    updater.step(model, {"x": torch.randn(4, 3)}, lambda m, b: m(b["x"]).pow(2).mean())


def test_resumed_step_equals_uninterrupted_step(tmp_path):
    """Weights, AdamW moments and the RNG (the next batch) all come back."""
    model, updater = _setup()
    _step(model, updater)
    save_checkpoint(tmp_path, 1, model, updater, keep=3)
    _step(model, updater)

    fresh, fresh_updater = _setup(seed=9)
    assert load_checkpoint(tmp_path / "step_0000001", fresh, fresh_updater) == 1
    _step(fresh, fresh_updater)
    assert torch.equal(fresh.weight, model.weight) and torch.equal(fresh.bias, model.bias)


def test_prune_keeps_newest_and_ignores_temporaries(tmp_path):
    model, updater = _setup()
    for step in (5, 10, 15):
        save_checkpoint(tmp_path, step, model, updater, keep=2)
    (tmp_path / ".step_0000020.tmp").mkdir()  # a kill during a write leaves only this
    (tmp_path / "step_0000025").mkdir()  # no checkpoint.json: incomplete
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000010", "step_0000015"]


def test_corrupt_checkpoint_is_refused(tmp_path):
    model, updater = _setup()
    path = save_checkpoint(tmp_path, 1, model, updater, keep=1)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(ArtifactError, match="content hash differs"):
        load_checkpoint(path, model, updater)
