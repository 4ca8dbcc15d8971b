import pytest
import torch

from whitebox.attribution.components import (
    Component,
    canonical_hook,
    enumerate_components,
    model_components,
)
from whitebox.tasks import get_task


@pytest.mark.parametrize("text", ["L0.H1", "L3.MLP", "L1.MLP.N17", "L2.RESID.P5", "L0.H1.P3", "L1.MLP.P0", "L1.MLP.N2.P7"])
def test_ids_round_trip(text):
    assert Component.parse(text).id == text


@pytest.mark.parametrize("bad", ["L0H1", "H1", "L0.MLP.N", "L1.RESID", "l0.h1", "", "L1.RESID.P2.P3", "L0.H1.P"])
def test_bad_ids_are_refused(bad):
    with pytest.raises(ValueError, match="not a component id"):
        Component.parse(bad)


def test_enumeration_counts_and_order():
    comps = enumerate_components(n_layers=2, n_heads=3, seq_len=4)
    kinds = [c.kind for c in comps]
    assert kinds.count("head") == 6 and kinds.count("mlp") == 2 and kinds.count("resid") == 3 * 4
    assert len(set(comps)) == len(comps)
    assert comps[0] == Component("resid", 0, 0) and comps[-1] == Component("resid", 2, 3)


def test_every_component_hook_exists_and_slices(arch_model, task_cfg):
    """Heads, MLPs, neurons and residual rows resolve on native and HF bridges, with the expected shapes."""
    model, cfg = arch_model
    pairs = get_task(task_cfg).contrast_pairs(3, seed=0)
    comps = model_components(model, pairs.seq_len) + [Component("neuron", 1, 5)]
    hooks = {c.hook(cfg.n_layers) for c in comps}
    _, cache = model.run_with_cache(pairs.triggered, names_filter=lambda name: name in hooks)
    expected = {
        "head": (3, pairs.seq_len, cfg.head_dim),
        "mlp": (3, pairs.seq_len, cfg.d_model),
        "neuron": (3, pairs.seq_len),
        "resid": (3, cfg.d_model),
    }
    for comp in comps:
        assert tuple(comp.select(cache[comp.hook(cfg.n_layers)]).shape) == expected[comp.kind], comp.id
    assert canonical_hook(model, "blocks.0.attn.hook_z") == "blocks.0.attn.o.hook_in"
    assert canonical_hook(model, "blocks.1.hook_resid_post") == "blocks.1.hook_out"


def test_replace_touches_only_the_slice():
    act = torch.randn(2, 5, 3, 4)  # batch pos head d_head
    out = Component("head", 0, 1).replace(act, torch.zeros(2, 5, 4))
    assert (out[:, :, 1] == 0).all() and torch.equal(out[:, :, [0, 2]], act[:, :, [0, 2]])
    resid = torch.randn(2, 5, 8)
    out = Component("resid", 0, 3).replace(resid, torch.ones(2, 8))
    assert (out[:, 3] == 1).all() and torch.equal(out[:, :3], resid[:, :3]) and torch.equal(out[:, 4:], resid[:, 4:])


def test_a_component_at_one_position_slices_only_that_position():
    act = torch.randn(2, 5, 3, 4)  # batch pos head d_head
    head = Component.parse("L0.H1.P2")
    assert head.whole == Component("head", 0, 1) and torch.equal(head.select(act), act[:, 2, 1])
    out = head.replace(act, 0.0)
    assert (out[:, 2, 1] == 0).all() and (out != act).sum() == (act[:, 2, 1] != 0).sum()
    post = torch.randn(2, 5, 6)  # batch pos d_mlp
    assert torch.equal(Component.parse("L0.MLP.N4.P3").select(post), post[:, 3, 4])
    assert torch.equal(Component.parse("L0.MLP.P3").select(post), post[:, 3])
