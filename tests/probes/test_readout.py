import pytest
import torch

from whitebox.probes import PROBE_KINDS, ProbeError, fit_readout, load_probe, load_readout


def test_the_readout_recovers_a_linear_class_and_round_trips_as_a_probe_artifact(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(600, 6, generator=gen, dtype=torch.float64)
    labels = (x[:, :3].argmax(1))  # the largest of the first three coordinates: linearly readable
    readout = fit_readout(x[:400], labels[:400], 3, hook="blocks.0.hook_out")
    accuracy = float((readout.log_probs(x[400:]).argmax(-1) == labels[400:]).double().mean())
    assert accuracy > 0.85
    readout.save(tmp_path / "r")
    again = load_readout(tmp_path / "r")
    assert again.hook == "blocks.0.hook_out" and again.hyperparameters["n_classes"] == 3
    assert torch.allclose(again.score(x[:5]), readout.score(x[:5]))
    with pytest.raises(ProbeError, match="a readout probe loads with whitebox.probes.load_readout"):
        load_probe(tmp_path / "r")


def test_one_registry_lists_every_probe_kind_and_says_which_fit_per_hook():
    assert list(PROBE_KINDS) == ["logistic", "mean_diff", "lda", "ccs", "readout"]
    assert [k for k, kind in PROBE_KINDS.items() if kind.fit is not None] == ["logistic", "mean_diff", "lda"]
    assert not PROBE_KINDS["mean_diff"].logit and PROBE_KINDS["lda"].logit
