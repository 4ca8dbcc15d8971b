import torch

from whitebox.probes import fit_ccs_probes
from whitebox.probes.ccs import fit_ccs, pair_scores
from whitebox.probes.metrics import auroc


def contrast_pairs(n: int, d: int = 10, seed: int = 0):
    """x_pos / x_neg share a per-example base; truth adds +-v, the side of the pair adds u, and each
    side has its own noise, larger than the truth signal in most directions."""
    gen = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=gen) < 0.5).double()
    v, u = torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
    v[0], u[1] = 1.0, 3.0
    scale = torch.linspace(0.3, 2.0, d, dtype=torch.float64)
    base = torch.randn(n, d, generator=gen, dtype=torch.float64) * 2
    base[:, 0] = 0  # the statement's content is orthogonal to its truth
    truth = (2 * y - 1)[:, None] * v
    noise = lambda: torch.randn(n, d, generator=gen, dtype=torch.float64) * scale
    return base + truth + u + noise(), base - truth - u + noise(), y


def test_ccs_separates_contrast_pairs_without_labels():
    x_pos, x_neg, _ = contrast_pairs(400)
    fit, loss = fit_ccs(x_pos[None], x_neg[None], restarts=5, steps=300, seed=0)
    test_pos, test_neg, test_y = contrast_pairs(2000, seed=1)
    auc = float(auroc(pair_scores(fit, test_pos[None], test_neg[None])[0, 0], test_y))
    assert max(auc, 1 - auc) > 0.97  # the sign is arbitrary without labels
    assert float(loss[0]) < 0.1


def test_labels_orient_the_probe_and_a_random_direction_is_the_control():
    x_pos, x_neg, y = contrast_pairs(400)
    test_pos, test_neg, test_y = contrast_pairs(2000, seed=1)
    probes = fit_ccs_probes({"h": x_pos}, {"h": x_neg}, y, held_out=({"h": test_pos}, {"h": test_neg}, test_y),
                            restarts=5, steps=300)
    m = probes["h"].metrics
    assert m["auroc"] > 0.97 and m["train_auroc"] > 0.97
    assert m["control_auroc"] < 0.9 and m["selectivity"] > 0.05
    assert probes["h"].kind == "ccs" and probes["h"].d_model == 10
