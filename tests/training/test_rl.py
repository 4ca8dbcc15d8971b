import pytest
import torch

from whitebox.config import TrainingConfig
from whitebox.training import RLConfig
from whitebox.training.rl import Reinforce

ARM_REWARD = torch.tensor([1.0, 0.3])


class Bandit(torch.nn.Module):
    """A two-armed policy: the answer logits are two parameters, whatever the input."""

    def __init__(self):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor([0.2, -0.1]))

    def forward(self, tokens):
        return self.logits.expand(*tokens.shape, 2)


def _rater(batch, answers):
    return ARM_REWARD[answers]


@pytest.mark.parametrize("baseline, start", [("group", 0.0), ("running", 0.9), ("running", -2.0)])
def test_reinforce_gradient_is_unbiased_on_a_two_armed_bandit(baseline, start):
    model = Bandit()
    updater = Reinforce(model, TrainingConfig(), RLConfig(group=4, baseline=baseline), _rater, seed=0)
    updater.baseline = start  # any baseline that does not depend on the sample keeps the estimate unbiased
    batch = {"tokens": torch.zeros(100_000, 1, dtype=torch.long)}
    loss, stats = updater.surrogate(model, batch, torch.Generator().manual_seed(1))
    loss.backward()
    p = model.logits.detach().softmax(-1)
    true = p * (ARM_REWARD - (p * ARM_REWARD).sum())  # d E[reward] / d logits
    estimate = -model.logits.grad
    assert torch.allclose(estimate, true, atol=0.006), (estimate, true)  # about 5 standard errors
    assert stats["reward"] == pytest.approx(float((p * ARM_REWARD).sum()), abs=0.005)


def test_reinforce_learns_the_better_arm_and_kl_holds_it_back():
    finals = {}
    for kl in (0.0, 1.0):
        model = Bandit()
        train = TrainingConfig(lr=0.05, warmup_steps=0, schedule="constant", grad_clip=None)
        updater = Reinforce(model, train, RLConfig(group=4, kl_coef=kl), _rater, seed=0)
        for _ in range(100):
            stats = updater.step(model, {"tokens": torch.zeros(64, 1, dtype=torch.long)}, None)
        finals[kl] = float(model.logits.detach().softmax(-1)[0])
        assert stats["forward_equivalents"] == 3 * 64 + (64 if kl else 0)
    assert finals[0.0] > 0.9 and 0.5 < finals[1.0] < finals[0.0]


def test_group_baseline_needs_two_samples():
    with pytest.raises(ValueError, match="group >= 2"):
        RLConfig(group=1, baseline="group")
