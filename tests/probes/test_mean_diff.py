import torch
from sklearn.metrics import roc_auc_score

from whitebox.probes.linalg import shrunk_covariance
from whitebox.probes.mean_diff import fit_mean_diff


def _stack(acts: dict) -> torch.Tensor:
    return torch.stack(list(acts.values()))  # hooks n d


def test_mass_mean_equals_its_closed_form(gaussian):
    x, y = _stack(gaussian.train), gaussian.y_train
    fit = fit_mean_diff(x, y)
    for i in range(x.shape[0]):
        mu1, mu0 = x[i][y == 1].mean(0), x[i][y == 0].mean(0)
        torch.testing.assert_close(fit.weight[i, 0], mu1 - mu0, rtol=1e-12, atol=1e-12)
        expected = (x[i] - (mu1 + mu0) / 2) @ (mu1 - mu0)
        torch.testing.assert_close(fit.scores(x)[i, 0], expected, rtol=1e-10, atol=1e-10)
    assert torch.equal(fit.std, torch.ones_like(fit.std))


def test_lda_equals_its_closed_form_and_reaches_the_bayes_optimum(gaussian):
    x, y = _stack(gaussian.train), gaussian.y_train
    fit = fit_mean_diff(x, y, lda=True)
    i = 1
    mu1, mu0 = x[i][y == 1].mean(0), x[i][y == 0].mean(0)
    centred = torch.where((y == 1)[:, None], x[i] - mu1, x[i] - mu0)
    cov = shrunk_covariance(centred[None])[0][0]
    w = torch.linalg.solve(cov, mu1 - mu0)
    torch.testing.assert_close(fit.weight[i, 0], w, rtol=1e-8, atol=1e-10)
    prior = torch.log(y.sum() / (1 - y).sum())
    torch.testing.assert_close(fit.scores(x)[i, 0], (x[i] - (mu1 + mu0) / 2) @ w + prior, rtol=1e-9, atol=1e-9)
    scores = fit.scores(_stack(gaussian.test))[:, 0]
    for j, hook in enumerate(gaussian.test):
        assert abs(roc_auc_score(gaussian.y_test, scores[j]) - gaussian.bayes_auroc[hook]) < 0.01


def test_mass_mean_is_worse_than_lda_under_correlated_noise(gaussian):
    # The planted covariance is far from isotropic, so the raw mean difference is not the Bayes direction.
    x, y, test = _stack(gaussian.train), gaussian.y_train, _stack(gaussian.test)
    mass, lda = fit_mean_diff(x, y).scores(test)[:, 0], fit_mean_diff(x, y, lda=True).scores(test)[:, 0]
    for j in range(x.shape[0]):
        assert roc_auc_score(gaussian.y_test, mass[j]) < roc_auc_score(gaussian.y_test, lda[j])
