import math

import pytest
import torch

from whitebox.studies.fourier import (
    fourier_basis,
    fourier_losses,
    frequency_norms,
    gini,
    key_frequencies,
    progress_measures,
)


@pytest.mark.parametrize("p", [7, 12, 13])
def test_basis_is_orthonormal(p):
    basis = fourier_basis(p)
    assert torch.allclose(basis @ basis.T, torch.eye(p, dtype=torch.float64), atol=1e-12)


def test_pure_frequency_embedding_gives_exactly_that_frequency():
    p, k = 17, 5
    x = torch.arange(p).double()
    phase = 0.7
    embedding = torch.stack([torch.cos(2 * math.pi * k * x / p + phase), 3 * torch.sin(2 * math.pi * k * x / p)], 1)
    norms = frequency_norms(embedding)
    assert key_frequencies(norms, 1) == [k]
    others = torch.cat([norms[: k - 1], norms[k:]])
    assert others.abs().max() < 1e-12 and norms[k - 1] > 1
    assert gini(norms) == pytest.approx(1 - 1 / len(norms))


def test_gini_of_equal_values_is_zero():
    assert gini(torch.ones(10)) == pytest.approx(0.0)


def _grid_logits(p, k, scale=6.0):
    a, b = (t.flatten().double() for t in torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij"))
    c = torch.arange(p).double()
    return scale * torch.cos(2 * math.pi * k * (a[:, None] + b[:, None] - c[None]) / p), ((a + b) % p).long()


def test_restricted_and_excluded_loss_on_a_known_circuit():
    """Logits made only of frequency k: keeping k loses nothing, removing it leaves chance."""
    p, k = 13, 4
    logits, target = _grid_logits(p, k)
    full = torch.nn.functional.cross_entropy(logits, target).item()
    train = torch.rand(p * p, generator=torch.Generator().manual_seed(0)) < 0.5
    right = fourier_losses(logits, [k], train)
    assert right["restricted_loss"] == pytest.approx(full, abs=1e-9)
    train_full = torch.nn.functional.cross_entropy(logits[train], target[train]).item()
    assert right["restricted_loss_train"] == pytest.approx(train_full, abs=1e-9)  # the training pairs' own loss
    assert right["excluded_loss"] == pytest.approx(math.log(p), abs=1e-9)
    wrong = fourier_losses(logits, [k + 1], train)
    assert wrong["restricted_loss"] == pytest.approx(math.log(p), abs=1e-9)
    assert wrong["restricted_loss_train"] == pytest.approx(math.log(p), abs=1e-9)
    assert wrong["excluded_loss"] == pytest.approx(train_full, abs=1e-9)


class _FourierModel(torch.nn.Module):
    """Answers a + b mod p through frequency k exactly, with a pure-frequency embedding."""

    def __init__(self, p, k):
        super().__init__()
        self.p, self.k = p, k
        x = torch.arange(p + 1).double()
        self.W_E = torch.nn.Parameter(torch.stack([torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)], 1).float())

    def forward(self, tokens):
        a, b = tokens[:, 0].double(), tokens[:, 1].double()
        c = torch.arange(self.p + 1).double()
        logits = 6.0 * torch.cos(2 * math.pi * self.k * (a[:, None] + b[:, None] - c[None]) / self.p)
        return logits.float()[:, None, :].expand(-1, 3, -1)


def test_progress_measures_of_a_generalising_model():
    p = 11
    train = torch.rand(p * p, generator=torch.Generator().manual_seed(1)) < 0.4
    m = progress_measures(_FourierModel(p, 3), p, train)
    assert m["train_acc"] == 1.0 and m["test_acc"] == 1.0
    assert m["key_freq_1"] == 3.0 and m["fourier_key_share"] == pytest.approx(1.0)
    assert m["restricted_loss"] == pytest.approx(m["test_loss"], abs=1e-4)
    assert m["restricted_loss_train"] == pytest.approx(m["train_loss"], abs=1e-4)
    assert m["excluded_loss"] == pytest.approx(math.log(p), abs=1e-4)
