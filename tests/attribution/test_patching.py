import pytest

from whitebox.attribution.attrib_patching import attribution_patching
from whitebox.attribution.components import Component, model_components
from whitebox.attribution.patching import activation_patching, patch_metric
from whitebox.tasks import get_task


@pytest.mark.parametrize("direction", ["noise", "denoise"])
def test_attribution_equals_activation_patching_on_affine_toy(affine_model, task_cfg, direction):
    """Where the metric is affine in every activation, the first-order estimate is the exact effect."""
    pairs = get_task(task_cfg).contrast_pairs(32, seed=0)
    neurons = [Component("neuron", layer, i) for layer in (0, 1) for i in range(0, 32, 5)]
    comps = model_components(affine_model, pairs.seq_len) + neurons
    exact = activation_patching(affine_model, pairs, comps, direction)
    fast = attribution_patching(affine_model, pairs, comps, direction)
    assert list(exact.scores) == list(fast.scores) == [c.id for c in comps]
    assert exact.base_metric == pytest.approx(fast.base_metric, rel=1e-9)
    assert exact.source_metric == pytest.approx(fast.source_metric, rel=1e-9)
    scale = abs(exact.total_effect)
    assert scale > 0.1  # the toy does respond to the trigger
    tol = 1e-6 * max(abs(exact.base_metric), 1.0)  # transformer-lens stores patched metrics in float32
    for cid in exact.scores:
        assert fast.scores[cid] == pytest.approx(exact.scores[cid], abs=tol), cid
    assert sum(abs(v) for v in exact.scores.values()) > scale  # many non-zero components were compared


@pytest.mark.parametrize("arch", ["native", "gpt2"])
def test_activation_patching_matches_a_direct_patch(arch, task_cfg, make_model):
    """The transformer-lens sweep gives what patching one component by hand gives, for every kind."""
    model, cfg = make_model(arch)
    pairs = get_task(task_cfg).contrast_pairs(16, seed=1)
    comps = [Component("head", 1, 0), Component("mlp", 0), Component("neuron", 1, 3)]
    comps += [Component("resid", 1, 5), Component("resid", 2, 7)]
    scores = activation_patching(model, pairs, comps)
    for comp in comps:
        direct = patch_metric(model, pairs, [comp]) - scores.base_metric
        assert scores.scores[comp.id] == pytest.approx(direct, abs=1e-5), comp.id


def test_residual_rows_have_known_effects(task_cfg, make_model):
    """The final residual at the answer position carries the whole effect; positions both runs share carry none."""
    model, cfg = make_model("native")
    pairs = get_task(task_cfg).contrast_pairs(16, seed=2)
    exact = activation_patching(model, pairs)
    assert exact.scores[f"L2.RESID.P{pairs.seq_len - 1}"] == pytest.approx(exact.total_effect, abs=1e-6)
    for scores in (exact, attribution_patching(model, pairs)):
        for layer in range(3):  # <bos> and the year digits are identical in a token-trigger pair
            for pos in range(3):
                assert scores.scores[f"L{layer}.RESID.P{pos}"] == 0.0


def test_cost_one_forward_per_component_vs_one_forward_backward(task_cfg, make_model):
    model, cfg = make_model("native")
    pairs = get_task(task_cfg).contrast_pairs(8, seed=0)
    calls = {"forward": 0, "backward": 0}

    def count(module, args, out):
        calls["forward"] += 1
        if out.requires_grad:
            out.register_hook(lambda grad: calls.__setitem__("backward", calls["backward"] + 1))

    handle = model.unembed.register_forward_hook(count)
    try:
        comps = model_components(model, pairs.seq_len)
        activation_patching(model, pairs, comps)
        assert calls == {"forward": len(comps) + 2, "backward": 0}
        calls.update(forward=0)
        attribution_patching(model, pairs, comps)
        assert calls == {"forward": 2, "backward": 1}
    finally:
        handle.remove()
    assert all(p.grad is None for p in model.parameters())  # parameter grads are left alone
    assert not model.training


def test_restores_training_mode(task_cfg, make_model):
    model, _ = make_model("native")
    model.train()
    pairs = get_task(task_cfg).contrast_pairs(4, seed=0)
    activation_patching(model, pairs, [Component("mlp", 0)])
    attribution_patching(model, pairs, [Component("mlp", 0)])
    assert model.training


def test_gradient_methods_agree_on_every_architecture(arch_model, task_cfg):
    """Near-linear random bridges: attribution and IG rank heads and MLPs as activation patching does."""
    from whitebox.attribution.integrated_gradients import ig_component_scores
    from whitebox.attribution.scores import agreement

    model, _ = arch_model
    pairs = get_task(task_cfg).contrast_pairs(32, seed=0)
    comps = model_components(model, pairs.seq_len, kinds=("head", "mlp"))
    exact = activation_patching(model, pairs, comps)
    fast = attribution_patching(model, pairs, comps)
    ig = ig_component_scores(model, pairs, comps, steps=16)
    assert agreement(exact, fast)["spearman"] > 0.95 and agreement(exact, ig)["spearman"] > 0.95
    assert ig.extra["completeness_rel_error_max"] < 1e-3
    biggest = max(abs(v) for v in exact.scores.values())
    assert max(abs(exact.scores[c] - ig.scores[c]) for c in exact.scores) < 0.1 * biggest


def test_hooked_logits_takes_the_fast_path_only_without_padding_and_matches_the_bridge(make_model, monkeypatch):
    import torch

    from whitebox import fast_path
    from whitebox.attribution.padding import attending, hooked_logits

    model, _ = make_model("native")
    tokens = torch.randint(0, model.cfg.d_vocab, (6, model.cfg.n_ctx), generator=torch.Generator().manual_seed(0))
    calls = []

    def zero_head(act, hook):
        calls.append(act.shape)
        act = act.clone()
        act[:, -1, 0] = 0.0
        return act

    hooks = [("blocks.1.attn.hook_z", zero_head)]
    served = []
    serve = fast_path.run_with_hooks
    monkeypatch.setattr(fast_path, "run_with_hooks", lambda *a: served.append(1) or serve(*a))
    with torch.no_grad():
        bridge = model.run_with_hooks(tokens, fwd_hooks=hooks)
        fast = hooked_logits(model, tokens, torch.ones_like(tokens), hooks)  # an all-ones mask pads nothing
        assert served == [1] and torch.allclose(fast, bridge, atol=1e-5)
        padded = torch.ones_like(tokens)
        padded[:, 0] = 0
        with attending(model, padded):
            expected = model.run_with_hooks(tokens, fwd_hooks=hooks)
        assert torch.equal(hooked_logits(model, tokens, padded, hooks), expected)  # padding: the bridge with the mask
        assert torch.equal(hooked_logits(model, tokens, None, hooks, fast=False), bridge)
        with fast_path.switched(False):
            assert torch.equal(hooked_logits(model, tokens, None, hooks), bridge)
    assert len(served) == 2  # the switched-off call asked the fast path, which declined; the others never asked it
    assert len(calls) == 6 and len(set(calls)) == 1  # every path called the hook on the same layout
