import pytest
import torch

from whitebox.attribution.ablation import ablated, mask, reference_activations, unit_sites
from whitebox.attribution.components import Component
from whitebox.tasks import get_task


def _units(*ids: str) -> list[Component]:
    return [Component.parse(i) for i in ids]


def test_masks_cover_exactly_the_components_slices():
    z = torch.zeros(3, 5, 2, 4)  # batch pos head d_head
    m = mask(_units("L0.H1.P2", "L0.H0"), z)
    assert m.shape == (1, 5, 2, 4) and m[0, :, 0].all() and m[0, 2, 1].all() and int(m.sum()) == 5 * 4 + 4
    post = torch.zeros(3, 5, 6)  # batch pos d_mlp
    m = mask(_units("L0.MLP.P1", "L0.MLP.N4"), post)
    assert m[0, 1].all() and m[0, :, 4].all() and int(m.sum()) == 6 + 5 - 1


@pytest.mark.parametrize("arch", ["native", "gpt2"])
def test_mean_ablating_an_mlps_neurons_is_mean_ablating_its_output(make_model, task_cfg, arch):
    """MLPs are ablated at hook_post; the output projection is linear, so this is the MLP output's mean."""
    model, _ = make_model(arch)
    tokens, ref = get_task(task_cfg).contrast_pairs(8, seed=0).triggered, get_task(task_cfg).contrast_pairs(16, seed=1).untriggered
    with ablated(model, _units("L1.MLP"), "mean", ref):
        ours = model(tokens)
    _, cache = model.run_with_cache(ref, names_filter=lambda n: n == "blocks.1.hook_mlp_out")
    mean_out = cache["blocks.1.hook_mlp_out"].mean(0, keepdim=True)
    expected = model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_mlp_out", lambda act, hook: mean_out.expand_as(act))])
    assert torch.allclose(ours, expected, atol=1e-4)


def test_a_head_everywhere_is_the_head_at_every_position(make_model, task_cfg):
    model, _ = make_model("native")
    pairs = get_task(task_cfg).contrast_pairs(8, seed=0)
    refs = reference_activations(model, pairs.untriggered)
    with ablated(model, _units("L0.H1"), "mean", refs):
        whole = model(pairs.triggered)
    with ablated(model, [Component("head", 0, 1, p) for p in range(pairs.seq_len)], "mean", refs):
        parts = model(pairs.triggered)
    assert torch.allclose(whole, parts, atol=1e-6)


def test_a_circuit_and_its_complement_partition_the_model(make_model, task_cfg):
    """Zeroing the circuit and then everything else zeroes every head and neuron, nothing twice or missed."""
    model, cfg = make_model("native")
    tokens = get_task(task_cfg).contrast_pairs(8, seed=0).triggered
    plain = model(tokens)
    circuit = _units("L0.H1.P2", "L1.H0", "L0.MLP.P3", "L1.MLP.N5")
    with ablated(model, circuit, "zero"), ablated(model, circuit, "zero", complement=True):
        both = model(tokens)
    everything = [Component("head", layer, h) for layer in range(cfg.n_layers) for h in range(cfg.n_heads)]
    everything += [Component("mlp", layer) for layer in range(cfg.n_layers)]
    with ablated(model, everything, "zero"):
        expected = model(tokens)
    assert torch.allclose(both, expected, atol=1e-6)
    with ablated(model, everything, "mean", tokens, complement=True):
        assert torch.equal(model(tokens), plain)  # nothing lies outside every head and MLP
    assert len(unit_sites(cfg.n_layers)) == 2 * cfg.n_layers
