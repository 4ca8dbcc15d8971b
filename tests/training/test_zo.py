import torch

from whitebox.training import ZOConfig
from whitebox.training.zo import ZerothOrder


class Quadratic(torch.nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(n))
        self.target = torch.linspace(-1, 1, n)


def _loss(model, batch):
    return (model.w - model.target).pow(2).sum()


def test_spsa_converges_on_a_quadratic():
    model = Quadratic(10)
    updater = ZerothOrder(model, ZOConfig(lr=0.02, eps=1e-3, samples=2), seed=0)
    batch = {"x": torch.zeros(4)}
    start = float(_loss(model, batch).detach())
    for _ in range(400):
        stats = updater.step(model, batch, _loss)
    assert float(_loss(model, batch).detach()) < 1e-3 * start
    assert stats["forward_equivalents"] == 2 * 2 * 4 and stats["examples"] == 4


def test_perturbations_are_undone_and_seeded():
    """A zero learning rate leaves the weights where they were (up to rounding); equal seeds give equal steps."""
    torch.manual_seed(0)
    model = Quadratic(50)
    model.w.data.normal_()
    start = model.w.detach().clone()
    ZerothOrder(model, ZOConfig(lr=1e-30, eps=1e-2), seed=0).step(model, {"x": torch.zeros(1)}, _loss)
    torch.testing.assert_close(model.w.detach(), start, rtol=0, atol=1e-6)
    twins = [Quadratic(50) for _ in range(2)]
    for twin in twins:
        ZerothOrder(twin, ZOConfig(lr=0.01), seed=4).step(twin, {"x": torch.zeros(1)}, _loss)
    assert torch.equal(twins[0].w, twins[1].w) and not torch.equal(twins[0].w, torch.zeros(50))
