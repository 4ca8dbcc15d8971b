"""Contrast-consistent search (Burns et al. 2022): a truth direction from unlabelled contrast pairs.

For each pair (x_pos, x_neg), a statement and its negation, the probe p(x) = sigmoid(w . z + b)
should be consistent, p(x_pos) = 1 - p(x_neg), and confident, min(p(x_pos), p(x_neg)) small.
Each side is centred by its own mean (so "which side of the pair" is not a feature) and both are
scaled by one shared std. All hooks and random restarts train together as one batched problem;
per hook the restart with the lowest loss wins. The sign is arbitrary unless labels orient it.
"""

from __future__ import annotations

import torch

from whitebox.probes.linalg import LinearFit
from whitebox.probes.metrics import auroc


def fit_ccs(
    x_pos: torch.Tensor,
    x_neg: torch.Tensor,
    labels: torch.Tensor | None = None,
    restarts: int = 10,
    steps: int = 1000,
    lr: float = 1e-2,
    weight_decay: float = 1e-2,
    seed: int = 0,
) -> tuple[LinearFit, torch.Tensor]:
    """CCS probes for pairs x_pos, x_neg [hooks, n, d]; returns the fit (k = 1) and the final loss [hooks].

    labels [n] (1 where x_pos is the true side), when given, only choose each probe's sign.
    """
    hooks, _, d = x_pos.shape
    assert x_neg.shape == x_pos.shape, f"contrast pairs differ in shape: {list(x_pos.shape)} vs {list(x_neg.shape)}"
    mu_pos, mu_neg = x_pos.double().mean(1), x_neg.double().mean(1)  # hooks d
    z_pos, z_neg = x_pos.double() - mu_pos[:, None], x_neg.double() - mu_neg[:, None]
    std = torch.cat([z_pos, z_neg], 1).std(1, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    z_pos, z_neg = z_pos / std[:, None], z_neg / std[:, None]

    gen = torch.Generator().manual_seed(seed)
    w = (torch.randn(hooks, restarts, d, generator=gen, dtype=torch.float64) / d**0.5).to(x_pos.device)
    b = torch.zeros(hooks, restarts, dtype=torch.float64, device=x_pos.device)
    w.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.AdamW([w, b], lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        loss = _ccs_loss(z_pos, z_neg, w, b)  # hooks restarts
        loss.sum().backward()  # the problems are independent, so their sum trains each one
        opt.step()
    with torch.no_grad():
        loss = _ccs_loss(z_pos, z_neg, w, b)
        best = loss.argmin(1)  # hooks
        pick = torch.arange(hooks, device=w.device)
        weight, bias = w[pick, best].detach(), b[pick, best].detach()  # hooks d, hooks
    if labels is not None:
        gap = torch.einsum("hnd,hd->hn", z_pos - z_neg, weight)  # score(x_pos) - score(x_neg)
        flip = auroc(gap, labels).to(weight.device) < 0.5
        sign = torch.where(flip, -1.0, 1.0).to(weight)
        weight, bias = weight * sign[:, None], bias * sign
    # One stored normalisation: the midpoint of the two sides' means and the shared std.
    mid = (mu_pos + mu_neg) / 2
    fit = LinearFit(weight[:, None], bias[:, None], mid, std, n_iter=steps, converged=torch.ones(hooks, 1, dtype=torch.bool))
    return fit, loss[pick, best].detach().cpu()


def pair_scores(fit: LinearFit, x_pos: torch.Tensor, x_neg: torch.Tensor) -> torch.Tensor:
    """score(x_pos) - score(x_neg) for every hook and pair [hooks, k, n]: the side offsets cancel."""
    return fit.scores(x_pos) - fit.scores(x_neg)


def _ccs_loss(z_pos: torch.Tensor, z_neg: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Consistency plus confidence loss for every hook and restart: hooks restarts."""
    p_pos = torch.sigmoid(torch.bmm(w, z_pos.transpose(1, 2)) + b[..., None])  # hooks restarts n
    p_neg = torch.sigmoid(torch.bmm(w, z_neg.transpose(1, 2)) + b[..., None])
    consistency = (p_pos - (1 - p_neg)).square().mean(-1)
    confidence = torch.minimum(p_pos, p_neg).square().mean(-1)
    return consistency + confidence
