import pytest
import torch

from whitebox.config import TrainingConfig
from whitebox.training.backprop import Backprop, autocast_dtype, lr_factor


def test_warmup_then_cosine_to_min_ratio():
    cfg = TrainingConfig(steps=110, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    factors = [lr_factor(s, cfg) for s in range(111)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[60] == pytest.approx(0.55) and factors[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))


@pytest.mark.parametrize("schedule, middle", [("linear", 0.5), ("constant", 1.0)])
def test_other_schedules(schedule, middle):
    cfg = TrainingConfig(steps=100, warmup_steps=0, schedule=schedule, min_lr_ratio=0.0)
    assert lr_factor(50, cfg) == pytest.approx(middle)


def test_weight_decay_only_on_matrices_and_clipping_reported():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    updater = Backprop(model, TrainingConfig(grad_clip=0.5, warmup_steps=0, weight_decay=0.3), torch.device("cpu"))
    decay, no_decay = updater.optimizer.param_groups
    assert [p.ndim for p in decay["params"]] == [2] and decay["weight_decay"] == 0.3
    assert all(p.ndim == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    batch = {"x": torch.randn(8, 4) * 100}
    stats = updater.step(model, batch, lambda m, b: m(b["x"]).pow(2).sum())
    assert stats["grad_norm"] > 0.5  # the norm before clipping is reported
    clipped = torch.cat([p.grad.flatten() for p in model.parameters()]).norm()
    assert clipped == pytest.approx(0.5, rel=1e-4)


def test_bf16_on_cpu_is_an_error_and_auto_is_fp32():
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert autocast_dtype("auto", torch.device("cuda")) is torch.bfloat16
    with pytest.raises(ValueError, match="needs a CUDA device"):
        autocast_dtype("bf16", torch.device("cpu"))


@pytest.mark.slow
def test_compiled_plant_training_follows_the_plain_one(tiny, tmp_path, monkeypatch):
    """training.compile runs the forward through torch.compile; the numbers stay the plain module's."""
    import whitebox

    compiled_calls = []
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compiled_calls.append(m) or real_compile(m, **kw))
    plain = whitebox.run(tiny, ["training.steps=6", "training.eval_every=6"], out=tmp_path / "plain")
    compiled = whitebox.run(tiny, ["training.steps=6", "training.eval_every=6", "training.compile=true"],
                            out=tmp_path / "compiled")
    assert len(compiled_calls) == 1  # the plain run compiled nothing, the compiled one its model once
    assert compiled["plant.loss"] == pytest.approx(plain["plant.loss"], rel=1e-4, abs=1e-5)
    assert compiled["plant.clean_acc"] == plain["plant.clean_acc"]
