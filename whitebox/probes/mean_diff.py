"""Mean-difference ("mass-mean") probes and their covariance-corrected (LDA) variant, closed form.

mass-mean: score(x) = (x - (mu_1 + mu_0) / 2) . (mu_1 - mu_0)
lda:       score(x) = (x - (mu_1 + mu_0) / 2) . S^-1 (mu_1 - mu_0) + log(n_1 / n_0)

with S the pooled within-class covariance, its correlation matrix Ledoit-Wolf-shrunk toward the
identity (linalg.shrunk_covariance), so the LDA score is the Gaussian log posterior odds. No
standardisation: the stored std is 1 and the stored mean is the data mean.
"""

from __future__ import annotations

import torch

from whitebox.probes.linalg import LinearFit, shrunk_covariance, spd_solve


def fit_mean_diff(x: torch.Tensor, y: torch.Tensor, lda: bool = False) -> LinearFit:
    """Closed-form probes for x [hooks, n, d] and y [hooks, k, n] or [k, n] or [n] 0/1 labels."""
    hooks = x.shape[0]
    y = torch.as_tensor(y, device=x.device).double()
    y = y[None] if y.dim() == 1 else y
    y = y[None].expand(hooks, -1, -1) if y.dim() == 2 else y  # hooks k n
    n_pos, n_neg = y.sum(-1), (1 - y).sum(-1)  # hooks k
    if bool(((n_pos == 0) | (n_neg == 0)).any()):
        raise ValueError("a mean-difference probe needs examples of both classes")
    xd = x.double()
    mu_pos = torch.bmm(y / n_pos[..., None], xd)  # hooks k d
    mu_neg = torch.bmm((1 - y) / n_neg[..., None], xd)
    diff = mu_pos - mu_neg
    mid = (mu_pos + mu_neg) / 2
    mean = xd.mean(1)  # hooks d
    if lda:
        label_sets = range(y.shape[1])
        weight = torch.stack([_lda_direction(xd, y[:, j], mu_pos[:, j], mu_neg[:, j], diff[:, j]) for j in label_sets], 1)
        prior = torch.log(n_pos / n_neg)
    else:
        weight, prior = diff, torch.zeros_like(n_pos)
    bias = ((mean[:, None, :] - mid) * weight).sum(-1) + prior  # folds the midpoint into the bias
    return LinearFit(weight, bias, mean, torch.ones_like(mean), n_iter=1, converged=torch.ones_like(bias, dtype=torch.bool))


def _lda_direction(x, y, mu_pos, mu_neg, diff) -> torch.Tensor:
    """S^-1 (mu_1 - mu_0) for one label set of every hook: x [hooks, n, d], y [hooks, n], the rest [hooks, d]."""
    centred = x - torch.where(y[..., None] > 0.5, mu_pos[:, None, :], mu_neg[:, None, :])  # hooks n d
    cov, _ = shrunk_covariance(centred)
    return spd_solve(cov, diff[..., None])[..., 0]
