import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from whitebox.probes.metrics import accuracy, auroc, recall_at_fpr


@pytest.fixture
def scored():
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(700, generator=gen) < 0.3
    scores = torch.randn(4, 700, generator=gen) + torch.arange(4)[:, None] * y  # rows of rising separation
    scores[3] = torch.round(scores[3])  # heavy ties
    return scores, y


def test_auroc_matches_scikit_learn_with_ties(scored):
    scores, y = scored
    ours = auroc(scores, y)
    assert ours.shape == (4,)
    for i in range(4):
        assert abs(float(ours[i]) - roc_auc_score(y.numpy(), scores[i].numpy())) < 1e-12


def test_recall_at_one_percent_fpr_matches_the_roc_curve(scored):
    scores, y = scored
    ours = recall_at_fpr(scores, y, 0.01)
    for i in range(4):
        fpr, tpr, _ = roc_curve(y.numpy(), scores[i].numpy(), drop_intermediate=False)
        assert abs(float(ours[i]) - tpr[fpr <= 0.01].max()) < 1e-12


def test_accuracy_thresholds_at_zero():
    y = torch.tensor([0, 0, 1, 1])
    assert float(accuracy(torch.tensor([-1.0, 0.0, 0.5, -0.2]), y)) == 0.75


def test_degenerate_inputs():
    assert np.isnan(float(auroc(torch.randn(5), torch.ones(5))))
    with pytest.raises(ValueError, match="NaN"):
        auroc(torch.tensor([0.0, float("nan")]), torch.tensor([0, 1]))
    assert float(auroc(torch.tensor([1.0, 2.0]), torch.tensor([0, 1]))) == 1.0
