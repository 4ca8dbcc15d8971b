"""Cross-model activation patching: the donor's circuit activations in the recipient, on the same inputs."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.attribution.conftest import tiny_model
from whitebox.attribution.components import Component
from whitebox.attribution.transplant import donor_activations, transplant_effect, transplanted
from whitebox.tasks import get_task
from whitebox.tasks.backdoor import BackdoorTaskConfig

TASK = BackdoorTaskConfig(trigger="token", seq_len=4, n_values=10)


def _broken_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The model with the layer-0 values (every head) and the layer-1 MLP input rewritten: what those units compute changes, nothing else."""
    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in other.named_parameters():
            if name.startswith(("layers.0._original_component.attn._original_component.v.",
                                "layers.1._original_component.mlp._original_component.fc_in.")):
                p.add_(torch.randn(p.shape, generator=gen))
    return other


def test_transplanting_the_units_that_changed_gives_back_the_donor_exactly():
    donor, _ = tiny_model()
    recipient = _broken_copy(donor)
    pairs = get_task(TASK).contrast_pairs(32, seed=0)
    units = [Component("head", 0, h) for h in range(2)] + [Component("mlp", 1)]
    acts = donor_activations(donor, units, pairs)
    with torch.no_grad():
        want, before = donor(pairs.triggered), recipient(pairs.triggered)
        with transplanted(recipient, units, acts):
            got = recipient(pairs.triggered)
    assert (before - want).abs().max() > 0.1  # the rewrite changed the output
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)  # the rest of the model is the donor's, so all of it comes back
    effect = transplant_effect(recipient, units, pairs, acts)
    assert effect["transplant_metric_gain"] == pytest.approx(float(pairs.mean_metric(want) - pairs.mean_metric(before)), abs=1e-5)
    assert effect["transplant_asr"] == float(pairs.fires(want).float().mean())


def test_a_model_given_its_own_activations_is_unchanged_and_one_position_is_patched_alone():
    model, _ = tiny_model(seed=1)
    other, _ = tiny_model(seed=2)
    pairs = get_task(TASK).contrast_pairs(16, seed=1)
    own = transplant_effect(model, [Component("mlp", 0)], pairs, donor_activations(model, [Component("mlp", 0)], pairs))
    assert own["transplant_metric_gain"] == pytest.approx(0.0, abs=1e-6)
    unit = Component("head", 1, 0, pos=pairs.seq_len - 1)
    acts = donor_activations(other, [unit], pairs)
    seen = {}

    def record(act, hook):
        seen["z"] = act.detach().clone()

    with torch.no_grad(), transplanted(model, [unit], acts), model.hooks(fwd_hooks=[("blocks.1.attn.hook_z", record)]):
        model(pairs.triggered)
    z, given = seen["z"], acts["blocks.1.attn.hook_z"]
    assert torch.equal(z[:, -1, 0], given[:, -1, 0])
    _, cache = model.run_with_cache(pairs.triggered, names_filter=["blocks.1.attn.hook_z"])
    assert torch.equal(z[:, :-1], cache["blocks.1.attn.hook_z"][:, :-1]) and torch.equal(z[:, -1, 1], cache["blocks.1.attn.hook_z"][:, -1, 1])


def test_donor_activations_of_other_inputs_are_refused():
    model, _ = tiny_model()
    acts = donor_activations(model, [Component("mlp", 0)], get_task(TASK).contrast_pairs(8, seed=0))
    with pytest.raises(ValueError, match="same inputs"):
        transplant_effect(model, [Component("mlp", 0)], get_task(TASK).contrast_pairs(4, seed=0), acts)
