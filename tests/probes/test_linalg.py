import numpy as np
import torch
from sklearn.covariance import ledoit_wolf as sk_ledoit_wolf

from whitebox.probes.linalg import (
    ledoit_wolf,
    shrunk_covariance,
    spd_inverse,
    spd_solve,
)


def test_ledoit_wolf_matches_scikit_learn():
    gen = torch.Generator().manual_seed(0)
    for n, d in [(40, 30), (500, 8)]:
        x = torch.randn(n, d, generator=gen, dtype=torch.float64) @ torch.randn(d, d, generator=gen, dtype=torch.float64)
        xc = x - x.mean(0)
        cov, shrink = ledoit_wolf(xc[None])
        ref_cov, ref_shrink = sk_ledoit_wolf(xc.numpy(), assume_centered=True)
        np.testing.assert_allclose(cov[0].numpy(), ref_cov, rtol=1e-10, atol=1e-12)
        assert abs(float(shrink[0]) - ref_shrink) < 1e-12


def test_shrunk_covariance_shrinks_the_correlation_and_keeps_the_variances():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(50, 5, generator=gen, dtype=torch.float64) * torch.tensor([0.01, 1, 10, 100, 1e4], dtype=torch.float64)
    xc = x - x.mean(0)
    cov, shrink = shrunk_covariance(xc[None], ridge=0.0)
    var = xc.square().mean(0)
    torch.testing.assert_close(cov[0].diagonal(), var)
    std = var.sqrt()
    ref_corr, ref_shrink = sk_ledoit_wolf((xc / std).numpy(), assume_centered=True)
    np.testing.assert_allclose((cov[0] / std[:, None] / std[None, :]).numpy(), ref_corr, rtol=1e-10, atol=1e-12)
    assert abs(float(shrink[0]) - ref_shrink) < 1e-12


def test_spd_solve_and_inverse_batched():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(5, 20, 6, generator=gen, dtype=torch.float64)
    spd = a.transpose(1, 2) @ a
    b = torch.randn(5, 6, 2, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(spd @ spd_solve(spd, b), b)
    torch.testing.assert_close(spd @ spd_inverse(spd), torch.eye(6, dtype=torch.float64).expand(5, 6, 6))
