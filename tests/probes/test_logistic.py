import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from whitebox.probes.logistic import fit_logistic


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


def test_overwrite_x_standardises_in_place_and_input_is_kept_otherwise(gaussian):
    x = _stack(gaussian.train).clone()
    before = x.clone()
    fit_logistic(x, gaussian.y_train)
    assert torch.equal(x, before)
    fit_logistic(x, gaussian.y_train, overwrite_x=True)
    torch.testing.assert_close(x.mean(1), torch.zeros(3, 12, dtype=torch.float64), atol=1e-9, rtol=0)


def test_constant_feature_and_separable_data_stay_finite():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 60, 4, generator=gen, dtype=torch.float64)
    x[..., 0] = 2.0  # a constant feature gets std 1, as in StandardScaler
    y = (x[0, :, 1] > 0).double()  # linearly separable: only the L2 penalty bounds w
    fit = fit_logistic(x, y, C=1.0)
    assert bool(fit.converged.all()) and bool(torch.isfinite(fit.weight).all())
    assert float(fit.std[0, 0]) == 1.0 and abs(float(fit.weight[0, 0, 0])) < 1e-12
