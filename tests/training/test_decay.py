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
