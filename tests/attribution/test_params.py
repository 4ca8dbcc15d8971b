import math

import pytest
import torch

from whitebox.attribution.components import Component
from whitebox.attribution.params import (
    GradientShare,
    MeasuredUpdater,
    circuit_parameters,
    parameter_masks,
)
from whitebox.tasks import get_task

ATTN = "layers.1._original_component.attn._original_component"
MLP = "layers.0._original_component.mlp._original_component"


def _w(prefix: str, layer: str, kind: str = "weight") -> str:
    return f"{prefix}.{layer}._original_component.{kind}"


def test_native_head_and_neuron_slices_are_the_known_ones(make_model):
    """d_model 16, 2 heads of 8: head 1 is rows 8:16 of W_Q/W_K/W_V (nn.Linear) and columns 8:16 of W_O."""
    model, _ = make_model("native")
    masks = parameter_masks(model, [Component("head", 1, 1)])
    rows = torch.zeros(16, 16, dtype=torch.bool)
    rows[8:16] = True
    for name in "qkv":
        assert torch.equal(masks[_w(ATTN, name)], rows)
        assert masks[_w(ATTN, name, "bias")].nonzero().flatten().tolist() == list(range(8, 16))
    assert torch.equal(masks[_w(ATTN, "o")], rows.T)
    assert set(masks) == {_w(ATTN, n, k) for n in "qkv" for k in ("weight", "bias")} | {_w(ATTN, "o")}  # no W_O bias

    masks = parameter_masks(model, [Component("neuron", 0, 5)])
    assert masks[_w(MLP, "fc_in")].nonzero().tolist() == [[5, i] for i in range(16)]
    assert masks[_w(MLP, "fc_in", "bias")].nonzero().flatten().tolist() == [5]
    assert masks[_w(MLP, "fc_out")].nonzero().tolist() == [[i, 5] for i in range(16)]
    assert set(masks) == {_w(MLP, "fc_in"), _w(MLP, "fc_in", "bias"), _w(MLP, "fc_out")}

    whole = parameter_masks(model, [Component("mlp", 0)])
    assert set(whole) == {_w(MLP, n, k) for n in ("fc_in", "fc_out") for k in ("weight", "bias")}
    assert all(m.all() for m in whole.values())


def _perturbed(model, masks, inside: bool):
    """A copy of the model's output at every hook after adding noise inside (or outside) the masked entries."""
    params = dict(model.named_parameters())
    saved = {n: p.detach().clone() for n, p in params.items()}
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, mask in masks.items():
            keep = mask if inside else ~mask
            params[name].add_(torch.randn(params[name].shape, generator=gen) * keep)
    return saved


@pytest.mark.parametrize("arch", ["native", "gpt2", "llama"])
def test_head_slices_drive_exactly_that_head(arch, make_model, task_cfg):
    """Noise on a head's slices changes that head's output (z) and no other head's; noise on the rest of
    the attention weights leaves that head's z and its write through W_O alone."""
    model, _ = make_model(arch)
    tokens = get_task(task_cfg).contrast_pairs(4, seed=0).triggered
    hook = "blocks.1.attn.hook_z"
    comp = Component("head", 1, 1)
    masks = parameter_masks(model, [comp])
    # every attention projection of layer 1 that the forward uses, whole
    attn = model.blocks[1].attn
    layer_params = {id(getattr(attn, n).original_component.weight) for n in "qkvo"}
    names = [n for n, p in model.named_parameters() if id(p) in layer_params]
    assert set(names) <= set(masks)

    def z(m):
        _, cache = m.run_with_cache(tokens, names_filter=lambda name: name == hook)
        return cache[hook]

    base = z(model)
    saved = _perturbed(model, masks, inside=True)
    moved = z(model)
    model.load_state_dict({**model.state_dict(), **saved}, strict=False)
    assert not torch.allclose(moved[:, :, 1], base[:, :, 1]) and torch.allclose(moved[:, :, 0], base[:, :, 0])

    # outside: only the head's own Q/K/V/O slices are spared (W_O columns of other heads move)
    outside = {n: masks.get(n, torch.zeros_like(p, dtype=torch.bool)) for n, p in model.named_parameters() if n in names}
    saved = _perturbed(model, outside, inside=False)
    moved = z(model)
    model.load_state_dict({**model.state_dict(), **saved}, strict=False)
    assert torch.allclose(moved[:, :, 1], base[:, :, 1], atol=1e-6) and not torch.allclose(moved[:, :, 0], base[:, :, 0])


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_neuron_slices_on_hf_layouts(arch, make_model):
    model, cfg = make_model(arch)
    slices = circuit_parameters(model, [Component("neuron", 0, 3)])["L0.MLP.N3"]
    params = dict(model.named_parameters())
    n_in = 2 if arch == "llama" else 1  # gate and up projections
    weights = [s for s in slices if params[s.param].ndim == 2]
    assert len(weights) == n_in + 1
    for s in weights:
        assert (s.start, s.stop) == (3, 4) and params[s.param].shape[s.dim] == cfg.d_mlp


def test_grad_share_is_one_when_only_the_circuit_gets_gradient(make_model):
    model, _ = make_model("native")
    comps = [Component("head", 1, 1), Component("neuron", 0, 5)]
    measure = GradientShare(model, comps)
    masks = parameter_masks(model, comps)
    params = dict(model.named_parameters())
    loss = sum((params[n][m] ** 2).sum() for n, m in masks.items())
    loss.backward()
    out = measure(model)
    assert out["circuit.grad_share"] == pytest.approx(1.0)
    expected_norm = math.sqrt(sum(float((params[n].detach()[m] ** 2).sum()) for n, m in masks.items()))
    assert out["circuit.weight_norm"] == pytest.approx(expected_norm)
    assert out["circuit.grad_norm"] == pytest.approx(2 * expected_norm, rel=1e-5)

    for p in model.parameters():  # an even gradient lands on the circuit in proportion to its size
        p.grad = torch.ones_like(p)
    assert measure(model)["circuit.grad_share"] == pytest.approx(out["circuit.param_share"])
    model.zero_grad(set_to_none=True)
    assert math.isnan(measure(model)["circuit.grad_share"])


def test_measured_updater_adds_the_measure(make_model):
    model, _ = make_model("native")

    class Plain:
        def step(self, model, batch, loss_fn):
            loss_fn(model, batch).backward()
            return {"loss": 1.0}

        def state_dict(self):
            return {"k": 1}

        def load_state_dict(self, state):
            self.state = state

    updater = MeasuredUpdater(Plain(), GradientShare(model, [Component("head", 0, 0)]))
    stats = updater.step(model, {"tokens": torch.zeros(2, 8, dtype=torch.long)}, lambda m, b: m(b["tokens"]).sum())
    assert stats["loss"] == 1.0 and 0.0 < stats["circuit.grad_share"] < 1.0
    assert updater.state_dict() == {"k": 1}
