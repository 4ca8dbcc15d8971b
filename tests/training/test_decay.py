"""treat.decay: every regime's weight matrices shrink by the same factor over the budget."""

from __future__ import annotations

import pytest
import torch

from whitebox.config import ConfigError, parse_config
from whitebox.training.decay import BudgetDecay


class Idle:
    """An update that changes nothing and costs `cost` forward-pass equivalents."""

    def __init__(self, cost: int):
        self.cost = cost

    def step(self, model, batch, loss_fn):
        return {"loss": 0.0, "forward_equivalents": self.cost}

    def state_dict(self):
        return {"cost": self.cost}

    def load_state_dict(self, state):
        self.cost = state["cost"]


@pytest.mark.parametrize("cost, steps", [(100, 10), (250, 4), (10, 100)])  # many cheap updates or few dear ones
def test_the_whole_budget_shrinks_the_matrices_by_one_minus_total_however_it_is_spent(cost, steps):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    before = [p.detach().clone() for p in model.parameters()]
    updater = BudgetDecay(Idle(cost), model, total=0.3, budget=1000)
    for _ in range(steps):
        updater.step(model, {}, None)
    after = list(model.parameters())
    torch.testing.assert_close(after[0], before[0] * 0.7, rtol=1e-5, atol=0)  # the weight matrix (float32 products)
    assert all(torch.equal(a, b) for a, b in zip(after[1:], before[1:]))  # biases and norms are left alone
    assert updater.state_dict() == {"cost": cost}


def test_treat_decay_beside_a_regimes_own_decay_is_refused():
    with pytest.raises(ConfigError, match="remove treat.es.weight_decay"):
        parse_config({"experiment": "treat", "treat": {"regimes": ["sft", "es"], "decay": 0.1, "es": {"weight_decay": 0.01}}})
    assert parse_config({"experiment": "treat", "treat": {"regimes": ["sft", "es"], "decay": 0.1}}).treat.decay == 0.1


def test_regime_lr_sets_one_regimes_adamw_rate_and_names_what_it_cannot_set():
    cfg = parse_config({"experiment": "treat", "treat": {"regimes": ["sft", "rl", "es"], "regime_lr": {"sft": 3e-3}}}).treat
    assert (cfg.lr_of("sft"), cfg.lr_of("rl")) == (3e-3, cfg.lr)
    with pytest.raises(ConfigError, match=r"treat.regime_lr.es: es has its own treat.es.lr"):
        parse_config({"experiment": "treat", "treat": {"regimes": ["sft", "es"], "regime_lr": {"es": 1e-2}}})
    with pytest.raises(ConfigError, match=r"treat.regime_lr.rl: not in treat.regimes"):
        parse_config({"experiment": "treat", "treat": {"regimes": ["sft"], "regime_lr": {"rl": 1e-2}}})


def test_a_treatment_cell_trains_with_its_regimes_rate_and_the_shared_decay(monkeypatch, tmp_path):
    """treat_cell hands build_regime the regime's own lr and no optimizer decay when treat.decay is set."""
    from tests.conftest import TINY
    from whitebox.models import build_model, save_model
    from whitebox.protocol import treat as treat_module
    from whitebox.runner import resolve_config
    from whitebox.runtime.rundir import StageDir
    from whitebox.tasks import get_task

    cfg = resolve_config(parse_config({**TINY, "experiment": "treat", "treat": {"regimes": ["sft"], "regime_lr": {"sft": 7e-4},
                                                                  "decay": 0.2, "budget": 2000, "n_train": 64}}))
    task = get_task(cfg.task)
    model = build_model(cfg.model, task.vocabulary())
    save_model(model, cfg.model, tmp_path / "start")
    seen = {}
    real = treat_module.build_regime

    def spy(regime, treat_cfg, model, loop_cfg, **kw):
        seen.update(lr=loop_cfg.lr, weight_decay=loop_cfg.weight_decay)
        return real(regime, treat_cfg, model, loop_cfg, **kw)

    monkeypatch.setattr(treat_module, "build_regime", spy)
    treat_module.treat_cell(model, cfg.model, task, cfg.treat, cfg.training, "sft", "absent", seed=0,
                            cell=StageDir(tmp_path / "cell"), start=tmp_path / "start", evaluate=lambda m: {"asr": 0.0},
                            log=type("Log", (), {"log": lambda *a: None, "rewind": lambda *a: None, "close": lambda *a, **k: None})())
    assert seen == {"lr": 7e-4, "weight_decay": 0.0}
