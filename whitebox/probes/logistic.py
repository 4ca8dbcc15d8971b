"""L2 logistic regression for many hooks at once: one batched solve, not a loop over hooks.

The objective is scikit-learn's `LogisticRegression(C=C)` on StandardScaler'd inputs:

    mean_i [log(1 + exp(z_i)) - y_i z_i] + ||w||^2 / (2 C n),   z_i = w . (x_i - mean) / std + b

(the intercept is not penalised). Each problem has only d + 1 unknowns and is strongly convex.
Narrow hooks use a damped Newton method, which converges in about ten steps: the Hessians of all
hooks come from one batched matmul per block of examples, and since one costs as much as ~30
gradient passes, a Hessian is reused while it still shrinks the gradient quickly ("lagged"
Newton). A Hessian costs n d^2 and d^2 memory per problem, so wide hooks (d > NEWTON_MAX_WIDTH)
use L-BFGS instead, hook by hook with a hook's label sets batched: every problem keeps its own
curvature pairs, and each step costs two passes over the hook's data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from whitebox.probes.linalg import LinearFit, spd_cholesky

ARMIJO = 1e-4
REFRESH = 0.5  # refactor the Hessian when a step shrank the largest gradient entry by less than this
# Widest hooks solved by Newton. Measured with scripts/bench_probes.py --crossover-widths 384 512 768 1024
# --crossover-hooks 2 --crossover-rows 2048 (1 thread, probe + control label sets, tol 1e-6, CPU time on a
# loaded 2-core machine, two runs): Newton / L-BFGS 0.83 at width 384, 0.78-1.09 at 512, 1.20 at 768,
# 1.23-1.32 at 1024, as L-BFGS needs 140-400 steps. Both costs grow with n alike; Newton's (d+1)^2 float64
# Hessian and its factor per hook and label set (2 x 2 MB at 512, 2 x 134 MB at 4096) also rule it out when wide.
NEWTON_MAX_WIDTH = 512
LBFGS_MEMORY = 10  # curvature pairs kept per problem, as scipy's L-BFGS-B (maxcor)
MAX_ITER = {"newton": 100, "lbfgs": 2000}


def fit_logistic(
    x: torch.Tensor,
    y: torch.Tensor,
    C: float = 1.0,
    tol: float | None = None,
    max_iter: int | None = None,
    overwrite_x: bool = False,
    block: int = 4096,
    solver: str = "auto",
) -> LinearFit:
    """Fit hooks x k logistic probes: x [hooks, n, d] activations, y [hooks, k, n] or [k, n] or [n] 0/1 labels.

    The k label sets of a hook (e.g. the real labels and a shuffled control) share its data and
    its standardisation. tol bounds the largest gradient entry of the mean objective (default
    1e-8 for float64 data; 1e-4, scikit-learn's own, for float32). overwrite_x standardises x in place instead of in
    a copy (for callers that own x). solver: "newton", "lbfgs" or "auto" (Newton up to
    NEWTON_MAX_WIDTH features). Runs on x's device; the data passes in x's precision, the
    parameters and solver state in float64. n_iter counts the steps taken (the most over hooks).
    """
    hooks, n, d = x.shape
    solver = solver_for(d) if solver == "auto" else solver
    if solver not in MAX_ITER:
        raise ValueError(f"unknown solver {solver!r}; choose from auto, {', '.join(MAX_ITER)}")
    y = _labels(y, hooks, n).to(x.device)  # hooks k n, float64
    k = y.shape[1]
    tol = tol if tol is not None else (1e-8 if x.dtype == torch.float64 else 1e-4)
    max_iter = max_iter if max_iter is not None else MAX_ITER[solver]
    lam = 1.0 / (C * n)
    w = torch.zeros(hooks, k, d, dtype=torch.float64, device=x.device)
    prior = y.mean(-1).clamp(1e-6, 1 - 1e-6)  # hooks k
    b = torch.log(prior / (1 - prior))  # the optimum when w = 0, where every p equals the prior
    if solver == "newton":
        z, mean, std, corr = _standardise(x if overwrite_x else x.clone(), True, block)
        chol = spd_cholesky(_first_hessian(corr, prior, lam).flatten(0, 1))
        w, b, steps, converged = _newton(_Problem(z, y, lam), w, b, chol, tol, max_iter, block)
        return LinearFit(w, b, mean, std, n_iter=steps, converged=converged)
    # Hook by hook, its label sets together: a batched step would cost every hook a pass until the
    # slowest converges, and one hook's standardised copy at a time is all the memory it needs.
    gamma = 1.0 / (prior * (1 - prior))  # the inverse curvature at w = 0 of a standardised feature
    fits = []
    for h in range(hooks):
        z, mean, std, _ = _standardise(x[h : h + 1] if overwrite_x else x[h : h + 1].clone(), False, block)
        fits.append((mean, std, *_lbfgs(_Problem(z, y[h : h + 1], lam), w[h : h + 1], b[h : h + 1], gamma[h : h + 1],
                                        tol, max_iter)))
    mean, std, w, b, converged = (torch.cat([fit[i] for fit in fits]) for i in (0, 1, 2, 3, 5))
    return LinearFit(w, b, mean, std, n_iter=max(fit[4] for fit in fits), converged=converged)


def solver_for(d: int) -> str:
    """The solver fit_logistic picks for width d: Newton while its d^2 Hessians are cheap, else L-BFGS."""
    return "newton" if d <= NEWTON_MAX_WIDTH else "lbfgs"


def _newton(problem: _Problem, w, b, chol, tol: float, max_iter: int, block: int):
    """Lagged damped Newton from (w, b) with the first Hessian's Cholesky factors; returns w, b, steps, converged."""
    hooks, k, d = w.shape
    logits = problem.logits(w, b)  # hooks k n
    loss = problem.objective(logits, w)
    last_gmax = None
    stalled = torch.zeros(hooks, k, dtype=torch.bool, device=w.device)  # no decrease left at this precision
    steps = 0
    for steps in range(max_iter + 1):
        grad = problem.gradient(logits, w)  # hooks k d+1
        gmax = grad.abs().amax(-1)
        converged = gmax <= tol
        done = converged | stalled
        if bool(done.all()) or steps == max_iter:
            break
        if last_gmax is not None and bool(((gmax > REFRESH * last_gmax) & ~done).any()):
            chol = spd_cholesky(problem.hessian(torch.sigmoid(logits), block).flatten(0, 1))
        last_gmax = gmax
        step = torch.cholesky_solve(grad.flatten(0, 1)[..., None], chol).view(hooks, k, d + 1)
        step = torch.where(done[..., None], torch.zeros_like(step), step)
        w, b, logits, loss, moved = _line_search(problem, w, b, step, grad, logits, loss)
        stalled |= ~moved & ~done
    return w, b, steps, converged


def _lbfgs(problem: _Problem, w, b, gamma: torch.Tensor, tol: float, max_iter: int):
    """Batched L-BFGS from (w, b); gamma [hooks, k] scales the first step. Returns w, b, steps, converged.

    Each problem has its own curvature pairs and initial scale; a pair whose curvature s.y is not
    positive (a problem that did not move) gets weight 0, so the others' history is untouched.
    """
    hooks, k, _ = w.shape
    logits = problem.logits(w, b)
    loss = problem.objective(logits, w)
    grad = problem.gradient(logits, w)
    pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (s, y, 1 / s.y), each hooks k [d+1]
    stalled = torch.zeros(hooks, k, dtype=torch.bool, device=w.device)
    steps = 0
    for steps in range(max_iter + 1):
        converged = grad.abs().amax(-1) <= tol
        done = converged | stalled
        if bool(done.all()) or steps == max_iter:
            break
        step = _two_loop(grad, pairs, gamma)  # approximately H^-1 grad
        step = torch.where(done[..., None], torch.zeros_like(step), step)
        new_w, new_b, logits, loss, moved = _line_search(problem, w, b, step, grad, logits, loss)
        new_grad = problem.gradient(logits, new_w)
        s = torch.cat([new_w - w, (new_b - b)[..., None]], -1)
        change = new_grad - grad
        sy = (s * change).sum(-1)
        curved = sy > 0
        pairs = (pairs + [(s, change, torch.where(curved, 1 / sy.where(curved, 1.0), 0.0))])[-LBFGS_MEMORY:]
        gamma = torch.where(curved, sy / change.square().sum(-1).clamp_min(1e-300), gamma)
        w, b, grad = new_w, new_b, new_grad
        stalled |= ~moved & ~done
    return w, b, steps, converged


def _two_loop(grad: torch.Tensor, pairs: list, gamma: torch.Tensor) -> torch.Tensor:
    """The L-BFGS two-loop recursion, batched over problems: the inverse-Hessian estimate times grad."""
    q = grad.clone()
    alphas = []
    for s, change, rho in reversed(pairs):
        alpha = rho * (s * q).sum(-1)
        q -= alpha[..., None] * change
        alphas.append(alpha)
    r = gamma[..., None] * q
    for (s, change, rho), alpha in zip(pairs, reversed(alphas)):
        r += (alpha - rho * (change * r).sum(-1))[..., None] * s
    return r


def _standardise(x: torch.Tensor, gram: bool, block: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Standardise x [hooks, n, d] in place; returns it, mean and std (float64) and (with gram) the correlations.

    With gram the std comes from the diagonal of the centred Gram matrix, which is also (up to a
    factor) the first Newton Hessian, so one matmul serves both; without (L-BFGS, wide hooks) it
    is summed block by block in float64, never allocating d^2.
    """
    hooks, n, d = x.shape
    mean = torch.bmm(torch.full((hooks, 1, n), 1.0 / n, dtype=x.dtype, device=x.device), x)  # hooks 1 d
    x.sub_(mean)
    if gram:
        cov = torch.bmm(x.transpose(1, 2), x).double() / n  # hooks d d: the covariance
        var = cov.diagonal(dim1=1, dim2=2)
    else:
        var = torch.zeros(hooks, d, dtype=torch.float64, device=x.device)
        for h in range(hooks):
            for start in range(0, n, block):
                var[h] += x[h, start : start + block].double().square().sum(0)
        var = var / n
    std = var.sqrt()  # hooks d, population std as StandardScaler
    floor = 100 * torch.finfo(x.dtype).eps * mean[:, 0].double().abs().clamp_min(1.0)  # rounding noise of a constant
    std = torch.where(std > floor, std, torch.ones_like(std))
    x.div_(std[:, None, :].to(x.dtype))
    corr = cov / (std[:, :, None] * std[:, None, :]) if gram else None
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
        """hooks k n (as z w', which runs 1.5-3x faster than w z' for k <= 2)"""
        return torch.bmm(self.z, w.to(self.z.dtype).transpose(1, 2)).transpose(1, 2).double() + b[..., None]

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


def _line_search(problem: _Problem, w, b, step, grad, logits, loss, max_halvings: int = 30):
    """Backtrack each problem's step until the Armijo condition holds.

    The logits are linear in (w, b), so one pass over the data gives the step's logits and every
    candidate costs O(n), not a pass; the objective differences are resolved in float64 even
    for float32 data. Returns the new (w, b) with their logits and objective, so the next
    iteration reuses them, and which problems found a decrease.
    """
    t = torch.ones_like(loss)  # hooks k
    slope = (grad * step).sum(-1)  # the objective falls at rate `slope` along -step
    step_logits = problem.logits(step[..., :-1], step[..., -1])
    accepted = torch.zeros_like(loss, dtype=torch.bool)
    new_w, new_b, new_logits, new_loss = w, b, logits, loss
    for _ in range(max_halvings):
        cand_w = w - t[..., None] * step[..., :-1]
        cand_b = b - t * step[..., -1]
        cand_logits = logits - t[..., None] * step_logits
        cand_loss = problem.objective(cand_logits, cand_w)
        ok = (cand_loss <= loss - ARMIJO * t * slope) & ~accepted
        new_w = torch.where(ok[..., None], cand_w, new_w)
        new_b = torch.where(ok, cand_b, new_b)
        new_logits = torch.where(ok[..., None], cand_logits, new_logits)
        new_loss = torch.where(ok, cand_loss, new_loss)
        accepted |= ok
        if bool(accepted.all()):
            break
        t = torch.where(accepted, t, t / 2)
    return new_w, new_b, new_logits, new_loss, accepted
