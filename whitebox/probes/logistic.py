"""L2 logistic regression for many hooks at once: one batched Newton solve, not a loop over hooks.

The objective is scikit-learn's `LogisticRegression(C=C)` on StandardScaler'd inputs:

    mean_i [log(1 + exp(z_i)) - y_i z_i] + ||w||^2 / (2 C n),   z_i = w . (x_i - mean) / std + b

(the intercept is not penalised). Each problem has only d + 1 unknowns and is strongly convex, so
a damped Newton method converges in about ten steps. The Hessians of all hooks come from one
batched matmul per block of examples; since one costs as much as ~30 gradient passes, a Hessian
is reused while it still shrinks the gradient quickly ("lagged" Newton).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from whitebox.probes.linalg import LinearFit, spd_cholesky

ARMIJO = 1e-4
REFRESH = 0.5  # refactor the Hessian when a step shrank the largest gradient entry by less than this


def fit_logistic(
    x: torch.Tensor,
    y: torch.Tensor,
    C: float = 1.0,
    tol: float | None = None,
    max_iter: int = 100,
    overwrite_x: bool = False,
    block: int = 4096,
) -> LinearFit:
    """Fit hooks x k logistic probes: x [hooks, n, d] activations, y [hooks, k, n] or [k, n] or [n] 0/1 labels.

    The k label sets of a hook (e.g. the real labels and a shuffled control) share its data and
    its standardisation. tol bounds the largest gradient entry of the mean objective (default
    1e-8 for float64 data; 1e-4, scikit-learn's own, for float32). overwrite_x standardises x in place instead of in
    a copy (for callers that own x). Runs on x's device; the data passes in x's precision, the
    parameters and Newton systems in float64.
    """
    hooks, n, d = x.shape
    y = _labels(y, hooks, n).to(x.device)  # hooks k n, float64
    k = y.shape[1]
    tol = tol if tol is not None else (1e-8 if x.dtype == torch.float64 else 1e-4)
    z, mean, std, corr = _standardise(x if overwrite_x else x.clone())
    problem = _Problem(z, y, 1.0 / (C * n))

    w = torch.zeros(hooks, k, d, dtype=torch.float64, device=x.device)
    prior = y.mean(-1).clamp(1e-6, 1 - 1e-6)  # hooks k
    b = torch.log(prior / (1 - prior))  # the optimum when w = 0, where every p equals the prior
    chol = spd_cholesky(_first_hessian(corr, prior, problem.lam).flatten(0, 1))
    logits = problem.logits(w, b)  # hooks k n
    loss = problem.objective(logits, w)
    last_gmax = None
    stalled = torch.zeros(hooks, k, dtype=torch.bool, device=x.device)  # no decrease left at this precision
    it = 0
    for it in range(1, max_iter + 1):
        grad = problem.gradient(logits, w)  # hooks k d+1
        gmax = grad.abs().amax(-1)
        converged = gmax <= tol
        done = converged | stalled
        if bool(done.all()):
            break
        if last_gmax is not None and bool(((gmax > REFRESH * last_gmax) & ~done).any()):
            chol = spd_cholesky(problem.hessian(torch.sigmoid(logits), block).flatten(0, 1))
        last_gmax = gmax
        step = torch.cholesky_solve(grad.flatten(0, 1)[..., None], chol).view(hooks, k, d + 1)
        step = torch.where(done[..., None], torch.zeros_like(step), step)
        w, b, logits, loss, moved = _line_search(problem, w, b, step, grad, loss)
        stalled |= ~moved & ~done
    return LinearFit(w, b, mean, std, n_iter=it, converged=converged)


def _standardise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Standardise x [hooks, n, d] in place; returns it, mean and std (float64) and the correlation matrices.

    The std comes from the diagonal of the centred Gram matrix, which is also (up to a factor)
    the first Newton Hessian, so one matmul serves both.
    """
    hooks, n, _ = x.shape
    mean = torch.bmm(torch.full((hooks, 1, n), 1.0 / n, dtype=x.dtype, device=x.device), x)  # hooks 1 d
    x.sub_(mean)
    gram = torch.bmm(x.transpose(1, 2), x).double() / n  # hooks d d: the covariance
    std = gram.diagonal(dim1=1, dim2=2).sqrt()  # hooks d, population std as StandardScaler
    floor = 100 * torch.finfo(x.dtype).eps * mean[:, 0].double().abs().clamp_min(1.0)  # rounding noise of a constant
    std = torch.where(std > floor, std, torch.ones_like(std))
    x.div_(std[:, None, :].to(x.dtype))
    corr = gram / (std[:, :, None] * std[:, None, :])
    return x, mean[:, 0].double(), std, corr


def _first_hessian(corr: torch.Tensor, prior: torch.Tensor, lam: float) -> torch.Tensor:
    """The Hessian at w = 0, where every example has curvature prior * (1 - prior): hooks k d+1 d+1."""
    hooks, d, _ = corr.shape
    curv = prior * (1 - prior)  # hooks k
    hess = torch.zeros(hooks, prior.shape[1], d + 1, d + 1, dtype=torch.float64, device=corr.device)
    hess[..., :d, :d] = curv[..., None, None] * corr[:, None] + lam * torch.eye(d, dtype=torch.float64, device=corr.device)
    hess[..., d, d] = curv  # the standardised features sum to zero, so the (w, b) block vanishes
    return hess


class _Problem:
    """The batched objective on standardised activations z [hooks, n, d]."""

    def __init__(self, z: torch.Tensor, y: torch.Tensor, lam: float):
        self.z, self.y, self.lam = z, y, lam
        self.n = z.shape[1]

    def logits(self, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """hooks k n"""
        return torch.bmm(w.to(self.z.dtype), self.z.transpose(1, 2)).double() + b[..., None]

    def objective(self, logits: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Mean log-loss plus the L2 penalty on the weights: hooks k."""
        return (F.softplus(logits) - self.y * logits).mean(-1) + 0.5 * self.lam * w.square().sum(-1)

    def gradient(self, logits: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """d objective / d (w, b): hooks k d+1."""
        r = (torch.sigmoid(logits) - self.y) / self.n  # hooks k n
        g_w = torch.bmm(r.to(self.z.dtype), self.z).double() + self.lam * w  # hooks k d
        return torch.cat([g_w, r.sum(-1, keepdim=True)], -1)

    def hessian(self, p: torch.Tensor, block: int) -> torch.Tensor:
        """Hessian in (w, b) for every hook and label set: hooks k d+1 d+1."""
        hooks, k, n = p.shape
        d = self.z.shape[-1]
        s = (p * (1 - p) / n).to(self.z.dtype)  # hooks k n: per-example curvature
        h_ww = torch.zeros(hooks, k, d, d, dtype=self.z.dtype, device=self.z.device)
        weighted = torch.empty(hooks, min(block, n), d, dtype=self.z.dtype, device=self.z.device)
        for start in range(0, n, block):
            chunk = self.z[:, start : start + block]  # hooks m d
            buf = weighted[:, : chunk.shape[1]]
            for j in range(k):  # the label sets of a hook share its data (k is 1, or 2 with a control)
                torch.mul(chunk, s[:, j, start : start + block, None], out=buf)
                h_ww[:, j] += torch.bmm(buf.transpose(1, 2), chunk)
        h_wb = torch.bmm(s, self.z).double()  # hooks k d
        hess = torch.zeros(hooks, k, d + 1, d + 1, dtype=torch.float64, device=self.z.device)
        hess[..., :d, :d] = h_ww.double() + self.lam * torch.eye(d, dtype=torch.float64, device=self.z.device)
        hess[..., :d, d] = h_wb
        hess[..., d, :d] = h_wb
        hess[..., d, d] = s.double().sum(-1)
        return hess


def _labels(y: torch.Tensor, hooks: int, n: int) -> torch.Tensor:
    y = torch.as_tensor(y).double()
    if y.dim() == 1:
        y = y[None]
    if y.dim() == 2:
        y = y[None].expand(hooks, -1, -1)
    assert y.shape[0] == hooks and y.shape[-1] == n, f"labels {list(y.shape)} do not fit {hooks} hooks x {n} examples"
    return y


def _line_search(problem: _Problem, w, b, step, grad, loss, max_halvings: int = 30):
    """Backtrack each problem's Newton step until the Armijo condition holds.

    Returns the new (w, b) with their logits and objective, so the next iteration reuses them, and
    which problems found a decrease.
    """
    t = torch.ones_like(loss)  # hooks k
    slope = (grad * step).sum(-1)  # the objective falls at rate `slope` along -step
    accepted = torch.zeros_like(loss, dtype=torch.bool)
    new_w, new_b, new_logits, new_loss = w, b, None, loss
    for _ in range(max_halvings):
        cand_w = w - t[..., None] * step[..., :-1]
        cand_b = b - t * step[..., -1]
        cand_logits = problem.logits(cand_w, cand_b)
        cand_loss = problem.objective(cand_logits, cand_w)
        ok = (cand_loss <= loss - ARMIJO * t * slope) & ~accepted
        new_w = torch.where(ok[..., None], cand_w, new_w)
        new_b = torch.where(ok, cand_b, new_b)
        new_logits = cand_logits if new_logits is None else torch.where(ok[..., None], cand_logits, new_logits)
        new_loss = torch.where(ok, cand_loss, new_loss)
        accepted |= ok
        if bool(accepted.all()):
            break
        t = torch.where(accepted, t, t / 2)
    if not bool(accepted.all()):  # no decrease found (at the precision floor): keep the old point
        new_logits = torch.where(accepted[..., None], new_logits, problem.logits(w, b))
    return new_w, new_b, new_logits, new_loss, accepted
