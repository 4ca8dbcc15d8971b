"""Path-integrated attribution patching: k = 1 is attribution patching, the estimate converges where it should, cost is counted."""

import pytest
import torch

from whitebox.attribution.attrib_patching import attribution_patching
from whitebox.attribution.components import Component, model_components
from whitebox.attribution.integrated_gradients import integrated_gradients
from whitebox.attribution.integrated_patching import DEFAULT_STEPS, PATH_START, integrated_patching, path_points
from whitebox.attribution.patching import activation_patching
from whitebox.config import LocateConfig
from whitebox.tasks import get_task


def _components(model, pairs):
    neurons = [Component("neuron", layer, i) for layer in (0, 1) for i in range(0, 32, 3)]
    return model_components(model, pairs.seq_len) + neurons + [Component("head", 1, 0, 5), Component("mlp", 0, None, 4)]


@pytest.mark.parametrize("arch", ["native", "gpt2", "llama"])
@pytest.mark.parametrize("direction", ["noise", "denoise"])
def test_one_step_is_attribution_patching_to_the_number(arch, direction, task_cfg, make_model):
    model, _ = make_model(arch)
    pairs = get_task(task_cfg).contrast_pairs(24, seed=3)
    comps = _components(model, pairs)
    linear = attribution_patching(model, pairs, comps, direction)
    one = integrated_patching(model, pairs, comps, direction, steps=1)
    assert one.scores == linear.scores  # every component, bit for bit
    assert (one.base_metric, one.source_metric) == (linear.base_metric, linear.source_metric)


def test_one_step_is_attribution_patching_on_a_planted_model(planted, task_cfg):
    model, _ = planted
    pairs = get_task(task_cfg).contrast_pairs(64, seed=0)
    comps = _components(model, pairs)
    assert integrated_patching(model, pairs, comps, steps=1).scores == attribution_patching(model, pairs, comps).scores


def test_exact_for_any_steps_where_the_metric_is_affine(affine_model, task_cfg):
    """A constant gradient averages to itself: every k gives the exact patching effect."""
    pairs = get_task(task_cfg).contrast_pairs(16, seed=0)
    comps = model_components(affine_model, pairs.seq_len)
    exact = activation_patching(affine_model, pairs, comps)
    tol = 1e-6 * max(abs(exact.base_metric), 1.0)
    for steps in (2, 5):
        scores = integrated_patching(affine_model, pairs, comps, steps=steps).scores
        assert all(scores[c] == pytest.approx(exact.scores[c], abs=tol) for c in exact.scores)


def test_converges_to_patching_where_the_component_is_the_whole_difference(planted, task_cfg):
    """Token-trigger pairs differ at the trigger slot only, so patching L0.RESID.P<slot> is the path's end: the limit is exact.

    The path moves the first block's input at every position at once. For a row whose pair differs
    at position p only, that is the straight line along which patching L0.RESID.Pp alone moves, so
    the k-point sum tends to the exact patching effect (a left Riemann sum: error O(1/k)), and the
    components of that hook add up to the whole effect. Downstream components get the gradient
    where everything upstream moved too, which is not what patching one of them measures, so no such
    limit holds for them (the benchmark measures how close they come).
    """
    model, _ = planted
    pairs = get_task(task_cfg).contrast_pairs(64, seed=1)
    comps = [Component("resid", 0, p) for p in range(pairs.seq_len)]
    exact = activation_patching(model, pairs, comps)
    scale = abs(exact.total_effect)
    assert abs(sum(exact.scores.values()) - exact.total_effect) < 1e-4 * scale  # the rows do add up to the effect
    errors = {}
    for steps in (1, 4, 32, 128):
        scores = integrated_patching(model, pairs, comps, steps=steps).scores
        errors[steps] = max(abs(scores[c] - exact.scores[c]) for c in exact.scores) / scale
    assert errors[1] > 0.05  # attribution patching alone is visibly off here
    # O(1/k) in the limit; a few points may overshoot first (k=4 can be worse than k=1), so no monotone claim for small k
    assert errors[1] > errors[32] > errors[128] and errors[128] < 0.01, errors


def test_limit_is_integrated_gradients_on_the_first_block_input(planted, task_cfg):
    """On the hook the path is laid on, the sum tends to IG's attribution of that hook (Captum, Gauss-Legendre)."""
    model, _ = planted
    pairs = get_task(task_cfg).contrast_pairs(32, seed=2)
    comps = [Component("resid", 0, p) for p in range(pairs.seq_len)]
    ig = integrated_gradients(model, pairs, PATH_START, steps=64)
    per_pos = ig.attributions.sum(dim=(0, 2)) / len(pairs)  # pos: mean over pairs, summed over d_model
    scores = integrated_patching(model, pairs, comps, steps=256).scores
    scale = float(ig.effect.abs().mean())
    for comp in comps:
        assert scores[comp.id] == pytest.approx(float(per_pos[comp.index]), abs=1e-2 * scale), comp.id  # left Riemann: error O(1/k)


def test_cost_is_one_source_forward_and_one_forward_backward_of_k_points(task_cfg, make_model):
    model, _ = make_model("native")
    pairs = get_task(task_cfg).contrast_pairs(8, seed=0)
    rows = {"forward": 0, "backward": 0}

    def count(module, args, out):
        rows["forward"] += out.shape[0]
        if out.requires_grad:
            out.register_hook(lambda grad: rows.__setitem__("backward", rows["backward"] + grad.shape[0]))

    handle = model.unembed.register_forward_hook(count)
    try:
        for steps in (1, 3, 8):
            rows.update(forward=0, backward=0)
            extra = integrated_patching(model, pairs, steps=steps).extra
            assert rows["forward"] == extra["forwards"] * len(pairs) and rows["backward"] == extra["backwards"] * len(pairs)
            assert (extra["steps"], extra["forwards"], extra["backwards"]) == (steps, 1 + steps, steps)
            assert extra["forward_equivalents"] == 1 + 3 * steps
    finally:
        handle.remove()
    assert attribution_patching(model, pairs).extra["forward_equivalents"] == 4
    comps = model_components(model, pairs.seq_len)
    assert activation_patching(model, pairs, comps).extra["forward_equivalents"] == len(comps) + 2
    assert all(p.grad is None for p in model.parameters())  # parameter grads are left alone
    assert not model.training


def test_points_start_at_the_base_run_and_stop_short_of_the_source():
    assert path_points(1).tolist() == [0.0]
    assert path_points(4).tolist() == [0.0, 0.25, 0.5, 0.75]


def test_rejects_fewer_than_one_step(task_cfg, make_model):
    model, _ = make_model("native")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        integrated_patching(model, get_task(task_cfg).contrast_pairs(4, seed=0), steps=0)


def test_restores_training_mode(task_cfg, make_model):
    model, _ = make_model("native")
    model.train()
    integrated_patching(model, get_task(task_cfg).contrast_pairs(4, seed=0), steps=2)
    assert model.training and torch.is_grad_enabled()


def test_the_config_default_is_the_chosen_k():
    assert LocateConfig().attribution_steps == DEFAULT_STEPS == 2
