"""fit_probes: one call for many hooks, held-out metrics, and the shuffled-label control."""

import pytest
import torch

from whitebox.capture import capture
from whitebox.probes import fit_probes


@pytest.mark.parametrize("kind", ["logistic", "lda", "mean_diff"])
def test_fit_probes_reports_metrics_near_the_bayes_optimum(gaussian, kind):
    probes = fit_probes(gaussian.train, gaussian.y_train, kind, held_out=(gaussian.test, gaussian.y_test), seed=3)
    assert list(probes) == list(gaussian.train)
    for hook, probe in probes.items():
        m = probe.metrics
        assert probe.kind == kind and probe.hook == hook and m["split"] == "held_out" and m["n_eval"] == 20000
        if kind != "mean_diff":
            assert abs(m["auroc"] - gaussian.bayes_auroc[hook]) < 0.01
        assert abs(m["control_auroc"] - 0.5) < 0.02  # scored against its own (shuffled) held-out labels
        assert m["selectivity"] == pytest.approx(m["auroc"] - m["control_auroc"])
        assert set(m) >= {"accuracy", "recall_at_1pct_fpr", "train_auroc", "control_train_auroc", "converged"}


def test_a_probe_that_memorises_shows_it():
    # 120 examples in 100 dimensions: any labels, even random ones, can be fitted.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(120, 100, generator=gen, dtype=torch.float64)
    y = (torch.rand(120, generator=gen) < 0.5).double()
    test_x = torch.randn(2000, 100, generator=gen, dtype=torch.float64)
    test_y = (torch.rand(2000, generator=gen) < 0.5).double()
    m = fit_probes({"h": x}, y, C=100.0, held_out=({"h": test_x}, test_y))["h"].metrics
    assert m["train_auroc"] > 0.99 and m["control_train_auroc"] > 0.99  # memorised both
    assert abs(m["auroc"] - 0.5) < 0.05 and abs(m["selectivity"]) < 0.08  # nothing generalises
    on_train = fit_probes({"h": x}, y, C=100.0)["h"].metrics
    assert on_train["split"] == "train" and on_train["selectivity"] < 0.02  # train-split control catches it too


def test_fit_from_captured_keeps_position_model_and_labels(native, backdoor_data):
    model, cfg = native
    train, test = backdoor_data
    captured = capture(model, train, "resid", positions=-2, labels="triggered", cfg=cfg)
    probes = fit_probes(captured, held_out=capture(model, test, "resid", positions=-2, labels="triggered"),
                        kind="lda", data_description="backdoor train, seed 0")
    assert list(probes) == captured.hooks
    probe = probes[captured.hooks[-1]]
    assert probe.position == -2 and probe.model == captured.model and probe.model["fingerprint"]
    assert probe.training_data["n"] == len(train) and probe.training_data["description"] == "backdoor train, seed 0"
    assert probe.training_data["n_positive"] == int(captured.labels.sum())


def test_hooks_of_different_widths_are_solved_in_separate_groups(gaussian):
    acts = {"wide": torch.randn(300, 20, dtype=torch.float64), "narrow": gaussian.train["blocks.0.hook_out"][:300]}
    probes = fit_probes(acts, gaussian.y_train[:300])
    assert [p.d_model for p in probes.values()] == [20, 12] and list(probes) == ["wide", "narrow"]


def test_bad_inputs_are_clear_errors(gaussian):
    acts = gaussian.train
    with pytest.raises(ValueError, match="single class"):
        fit_probes(acts, torch.zeros(len(gaussian.y_train)))
    with pytest.raises(ValueError, match=r"labels must have shape \[3000\]"):
        fit_probes(acts, gaussian.y_train[:10])
    with pytest.raises(ValueError, match="same examples"):
        fit_probes({"a": torch.zeros(10, 2), "b": torch.zeros(11, 2)}, torch.arange(10) % 2)
    with pytest.raises(ValueError, match="fit_ccs_probes"):
        fit_probes(acts, gaussian.y_train, kind="ccs")
    with pytest.raises(ValueError, match=r"activations of \['h'\] contain NaN"):
        fit_probes({"h": torch.full((4, 2), float("nan"))}, torch.arange(4) % 2)
    with pytest.raises(ValueError, match="binary"):
        fit_probes(acts, torch.arange(3000) % 3)
