"""Shared linear algebra for probes and detectors: the linear read-out, Ledoit-Wolf shrinkage, SPD solves.

Batched symmetric solves go through Cholesky: batched LU (`torch.linalg.solve`, `inv`) fails
with "Pivots given to lu_solve" under 2 MKL threads in the torch 2.13 CPU build used here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LinearFit:
    """Linear read-outs for `hooks` x `k` label sets: score = ((x - mean) / std) @ weight + bias."""

    weight: torch.Tensor  # hooks k d
    bias: torch.Tensor  # hooks k
    mean: torch.Tensor  # hooks d
    std: torch.Tensor  # hooks d
    n_iter: int = 0
    converged: torch.Tensor | None = None  # hooks k

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of every read-out on x [hooks, n, d]: [hooks, k, n], without a standardised copy."""
        w = (self.weight / self.std[:, None, :]).to(x.dtype)  # hooks k d, raw-space coefficients
        b = self.bias - (self.weight * (self.mean / self.std)[:, None, :]).sum(-1)  # hooks k
        return torch.bmm(w, x.transpose(1, 2)).double() + b[..., None].double()


def ledoit_wolf(xc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ledoit-Wolf shrunk covariance of centred xc [batch, n, d] (as sklearn.covariance.ledoit_wolf).

    Returns the covariances [batch, d, d] and the shrinkage in [0, 1] per batch entry.
    """
    n, d = xc.shape[-2:]
    x = xc.double()
    emp = torch.bmm(x.transpose(1, 2), x) / n  # batch d d
    mu = emp.diagonal(dim1=1, dim2=2).sum(-1) / d  # batch
    beta_ = x.square().sum(-1).square().sum(-1)  # sum over samples of |x_i|^4
    delta_ = emp.square().sum((1, 2))  # |emp|_F^2
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2 * mu * emp.diagonal(dim1=1, dim2=2).sum(-1) + d * mu.square()) / d
    beta = torch.minimum(beta, delta)
    shrink = torch.where(delta > 0, beta / delta.clamp_min(1e-300), torch.zeros_like(delta)).clamp(0, 1)
    eye = torch.eye(d, dtype=torch.float64, device=x.device)
    cov = (1 - shrink)[:, None, None] * emp + (shrink * mu)[:, None, None] * eye
    return cov, shrink


def shrunk_covariance(xc: torch.Tensor, ridge: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Covariance of centred xc [batch, n, d] with its correlation matrix Ledoit-Wolf-shrunk toward the identity.

    Scale-free, unlike shrinking toward a multiple of the identity, so a few huge-variance residual
    dimensions do not swamp the small ones. `ridge` on the correlation diagonal keeps a constant or
    duplicated feature invertible. Returns the covariances [batch, d, d] and the shrinkage [batch].
    """
    x = xc.double()
    std = x.square().mean(1).sqrt()  # batch d
    std = torch.where(std > 0, std, torch.ones_like(std))
    corr, shrink = ledoit_wolf(x / std[:, None, :])
    corr = corr + ridge * torch.eye(x.shape[-1], dtype=torch.float64, device=x.device)
    return corr * std[:, :, None] * std[:, None, :], shrink


def spd_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a^-1 b for symmetric positive-definite a [batch, d, d] and b [batch, d, m], via Cholesky."""
    return torch.cholesky_solve(b, spd_cholesky(a))


def spd_inverse(a: torch.Tensor) -> torch.Tensor:
    """The inverse of symmetric positive-definite a [batch, d, d], via Cholesky."""
    return torch.cholesky_inverse(spd_cholesky(a))


def spd_cholesky(a: torch.Tensor) -> torch.Tensor:
    """Lower Cholesky factors of a [batch, d, d], adding diagonal jitter only where one is semi-definite."""
    chol, info = torch.linalg.cholesky_ex(a)
    jitter = 1e-10 * a.diagonal(dim1=-2, dim2=-1).abs().mean(-1).clamp_min(1e-30)  # batch
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    for _ in range(8):
        failed = info > 0
        if not bool(failed.any()):
            return chol
        retry, _ = torch.linalg.cholesky_ex(a + (jitter * failed)[..., None, None] * eye)
        chol = torch.where(failed[..., None, None], retry, chol)
        info = torch.where(failed, torch.linalg.cholesky_ex(a + (jitter * failed)[..., None, None] * eye)[1], info)
        jitter = jitter * 100
    raise ValueError("matrix is not positive definite even with diagonal jitter; the features are degenerate")
