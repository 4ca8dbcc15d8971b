"""Synthetic data with a planted direction (and its Bayes-optimal AUROC) and tiny bridges for the probe tests."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from whitebox.config import ModelConfig
from whitebox.models import build_model
from whitebox.tasks import get_task
from whitebox.tasks.backdoor import BackdoorTaskConfig

TASK = BackdoorTaskConfig(seq_len=4, n_values=10, trigger_rate=0.5, n_train=192, n_eval=96)


@dataclass
class Planted:
    """Two Gaussian classes N(mu_y, cov) per hook; bayes_auroc = Phi(Delta / sqrt 2), Delta the Mahalanobis gap."""

    train: dict[str, torch.Tensor]
    y_train: torch.Tensor
    test: dict[str, torch.Tensor]
    y_test: torch.Tensor
    bayes_auroc: dict[str, float]


def planted(hooks: int = 3, d: int = 12, n_train: int = 3000, n_test: int = 20000, seed: int = 0) -> Planted:
    """Correlated, unevenly scaled, offset features with a mean shift along a hidden direction."""
    gen = torch.Generator().manual_seed(seed)
    train, test, bayes = {}, {}, {}
    y_train = (torch.rand(n_train, generator=gen) < 0.4).double()
    y_test = (torch.rand(n_test, generator=gen) < 0.4).double()
    for h in range(hooks):
        mix = torch.randn(d, d, generator=gen, dtype=torch.float64) / d**0.5 + 0.5 * torch.eye(d, dtype=torch.float64)
        mix = mix * torch.exp(torch.randn(d, 1, generator=gen, dtype=torch.float64))  # uneven feature scales
        offset = 3 * torch.randn(d, generator=gen, dtype=torch.float64)
        gap = 0.6 + 0.8 * h  # Mahalanobis distance between the class means
        u = torch.randn(d, generator=gen, dtype=torch.float64)
        shift = gap * mix @ (u / u.norm())  # so that shift' cov^-1 shift = gap^2 with cov = mix mix'
        name = f"blocks.{h}.hook_out"
        train[name], test[name] = (
            torch.randn(len(y), d, generator=gen, dtype=torch.float64) @ mix.T + offset + y[:, None] * shift
            for y in (y_train, y_test)
        )
        bayes[name] = 0.5 * (1 + math.erf(gap / math.sqrt(2) / math.sqrt(2)))
    return Planted(train, y_train, test, y_test, bayes)


@pytest.fixture(scope="session")
def gaussian() -> Planted:
    return planted()


def tiny_bridge(arch: str, seed: int = 0, d_model: int = 16, n_layers: int = 2) -> tuple[torch.nn.Module, ModelConfig]:
    vocab = get_task(TASK).vocabulary()
    cfg = ModelConfig(arch=arch, n_layers=n_layers, d_model=d_model, n_heads=2, d_mlp=32,
                      d_vocab=len(vocab), n_ctx=get_task(TASK).seq_len() + 4)
    torch.manual_seed(seed)
    return build_model(cfg, vocab).eval(), cfg


@pytest.fixture(scope="session")
def native() -> tuple[torch.nn.Module, ModelConfig]:
    return tiny_bridge("native")


@pytest.fixture(scope="session")
def gpt2() -> tuple[torch.nn.Module, ModelConfig]:
    return tiny_bridge("gpt2")


@pytest.fixture(scope="session")
def backdoor_data():
    return get_task(TASK).train_set(0), get_task(TASK).eval_set(0)


@pytest.fixture(scope="session")
def make_bridge():
    """tiny_bridge(arch, seed=0, d_model=16, n_layers=2) for tests that need a model of another shape."""
    return tiny_bridge
