import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from tests.probes.conftest import planted
from whitebox.probes.logistic import NEWTON_MAX_WIDTH, fit_logistic, solver_for


def _stack(acts: dict) -> torch.Tensor:
    return torch.stack(list(acts.values()))  # hooks n d


@pytest.mark.parametrize("C", [0.05, 1.0])
def test_matches_scikit_learn_coefficients_and_auroc(gaussian, C):
    x, y = _stack(gaussian.train), gaussian.y_train
    fit = fit_logistic(x, y, C=C)
    assert bool(fit.converged.all())
    scores = fit.scores(_stack(gaussian.test))[:, 0]  # hooks n
    for i, hook in enumerate(gaussian.train):
        scaler = StandardScaler().fit(gaussian.train[hook].numpy())
        ref = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(scaler.transform(gaussian.train[hook].numpy()), y.numpy())
        np.testing.assert_allclose(fit.weight[i, 0].numpy(), ref.coef_[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(fit.bias[i, 0]), ref.intercept_[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fit.mean[i].numpy(), scaler.mean_, rtol=1e-10)
        np.testing.assert_allclose(fit.std[i].numpy(), scaler.scale_, rtol=1e-10)
        ref_auc = roc_auc_score(gaussian.y_test, ref.decision_function(scaler.transform(gaussian.test[hook].numpy())))
        assert abs(roc_auc_score(gaussian.y_test, scores[i]) - ref_auc) < 1e-6


def test_recovers_the_planted_direction_near_the_bayes_optimum(gaussian):
    fit = fit_logistic(_stack(gaussian.train), gaussian.y_train)
    scores = fit.scores(_stack(gaussian.test))[:, 0]
    for i, hook in enumerate(gaussian.test):
        auc = roc_auc_score(gaussian.y_test, scores[i])
        assert gaussian.bayes_auroc[hook] - 0.01 < auc < gaussian.bayes_auroc[hook] + 0.01, (hook, auc)


def test_batched_solve_equals_one_hook_at_a_time(gaussian):
    x, y = _stack(gaussian.train), gaussian.y_train
    both = fit_logistic(x, y)
    for i in range(x.shape[0]):
        alone = fit_logistic(x[i : i + 1], y)
        torch.testing.assert_close(both.weight[i], alone.weight[0], rtol=1e-5, atol=1e-6)  # both at tol 1e-8


def test_label_sets_share_data_and_float32_converges(gaussian):
    x, y = _stack(gaussian.train).float(), gaussian.y_train
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    fit = fit_logistic(x, torch.stack([y, shuffled]))
    assert fit.weight.shape == (3, 2, 12) and bool(fit.converged.all())
    exact = fit_logistic(x.double(), y)
    torch.testing.assert_close(fit.weight[:, 0], exact.weight[:, 0], rtol=2e-3, atol=2e-3)
    train_scores = fit.scores(x)
    memorised = [roc_auc_score(shuffled, train_scores[i, 1]) for i in range(3)]
    assert all(0.5 < a < 0.58 for a in memorised), memorised  # 12 features barely fit 3000 random labels
    test_scores = fit.scores(_stack(gaussian.test).float())
    control_labels = gaussian.y_test[torch.randperm(len(gaussian.y_test), generator=torch.Generator().manual_seed(1))]
    control_auc = [roc_auc_score(control_labels, test_scores[i, 1]) for i in range(3)]
    assert all(abs(a - 0.5) < 0.02 for a in control_auc), control_auc


@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
def test_overwrite_x_standardises_in_place_and_input_is_kept_otherwise(gaussian, solver):
    x = _stack(gaussian.train).clone()
    before = x.clone()
    fit_logistic(x, gaussian.y_train, solver=solver)
    assert torch.equal(x, before)
    fit_logistic(x, gaussian.y_train, overwrite_x=True, solver=solver)
    torch.testing.assert_close(x.mean(1), torch.zeros(3, 12, dtype=torch.float64), atol=1e-9, rtol=0)


def test_constant_feature_and_separable_data_stay_finite():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 60, 4, generator=gen, dtype=torch.float64)
    x[..., 0] = 2.0  # a constant feature gets std 1, as in StandardScaler
    y = (x[0, :, 1] > 0).double()  # linearly separable: only the L2 penalty bounds w
    fit = fit_logistic(x, y, C=1.0)
    assert bool(fit.converged.all()) and bool(torch.isfinite(fit.weight).all())
    assert float(fit.std[0, 0]) == 1.0 and abs(float(fit.weight[0, 0, 0])) < 1e-12


def _mean_objective(fit, z: torch.Tensor, y: torch.Tensor, C: float) -> torch.Tensor:
    """The solvers' mean objective per hook of the probe (k = 0) on standardised z [hooks, n, d]."""
    logits = torch.einsum("hnd,hd->hn", z.double(), fit.weight[:, 0]) + fit.bias[:, :1]
    penalty = fit.weight[:, 0].square().sum(-1) / (2 * C * z.shape[1])
    return (torch.nn.functional.softplus(logits) - y * logits).mean(-1) + penalty


def test_lbfgs_reaches_the_newton_solution(gaussian):
    x, y = _stack(gaussian.train), gaussian.y_train
    newton, lbfgs = (fit_logistic(x, y, C=0.05, solver=s) for s in ("newton", "lbfgs"))
    assert bool(lbfgs.converged.all())
    torch.testing.assert_close(lbfgs.weight, newton.weight, rtol=1e-5, atol=1e-6)  # both at tol 1e-8
    z = (x - newton.mean[:, None]) / newton.std[:, None]
    torch.testing.assert_close(_mean_objective(lbfgs, z, y, 0.05), _mean_objective(newton, z, y, 0.05), rtol=1e-12, atol=0)
    test = _stack(gaussian.test)
    for ours, ref in zip(lbfgs.scores(test)[:, 0], newton.scores(test)[:, 0]):
        assert abs(roc_auc_score(gaussian.y_test, ours) - roc_auc_score(gaussian.y_test, ref)) < 1e-6


def test_lbfgs_on_wide_float32_data_with_a_control_matches_newton():
    data = planted(hooks=2, d=96, n_train=1500, n_test=4000, seed=3)
    x, y = _stack(data.train).float(), data.y_train
    labels = torch.stack([y, y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]])
    newton, lbfgs = (fit_logistic(x, labels, tol=1e-6, solver=s) for s in ("newton", "lbfgs"))
    assert bool(lbfgs.converged.all()) and lbfgs.n_iter > newton.n_iter
    z = ((x.double() - newton.mean[:, None]) / newton.std[:, None])
    gap = (_mean_objective(lbfgs, z, y, 1.0) - _mean_objective(newton, z, y, 1.0)).abs() / _mean_objective(newton, z, y, 1.0)
    assert float(gap.max()) < 1e-7, gap
    test = _stack(data.test).float()
    for ours, ref in zip(lbfgs.scores(test)[:, 0], newton.scores(test)[:, 0]):
        assert abs(roc_auc_score(data.y_test, ours) - roc_auc_score(data.y_test, ref)) < 1e-4


def test_solver_is_picked_by_width():
    assert solver_for(NEWTON_MAX_WIDTH) == "newton" and solver_for(NEWTON_MAX_WIDTH + 1) == "lbfgs"
    with pytest.raises(ValueError, match="unknown solver"):
        fit_logistic(torch.randn(1, 8, 2), torch.tensor([0, 1] * 4), solver="sgd")
