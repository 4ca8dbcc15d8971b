"""Which parameter slices implement a circuit, and how much of each update lands on them.

A head owns its rows of W_Q, W_K, W_V (and their biases) and its columns of W_O; an MLP neuron
owns its row of W_in (and W_gate, bias) and its column of W_out; a whole MLP owns its layer's MLP
weights and biases. Shared pieces (W_O's bias, norms, embeddings) belong to no component.
Slices are found through the bridge's q/k/v/o and in/gate/out submodules, so native, GPT-2
(Conv1D, stored transposed) and Llama (Linear, grouped K/V heads) resolve alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch

from whitebox.attribution.components import Component


@dataclass(frozen=True)
class ParamSlice:
    """param[..., start:stop, ...] along `dim`, by the name in model.named_parameters()."""

    param: str
    dim: int
    start: int
    stop: int


def component_parameters(model: torch.nn.Module, comp: Component) -> list[ParamSlice]:
    """The parameter slices that implement one head, MLP layer or MLP neuron."""
    names = {id(p): name for name, p in model.named_parameters()}
    block = model.blocks[comp.layer]
    cfg = model.cfg
    if comp.kind == "head":
        d_head, n_heads = int(cfg.d_head), int(cfg.n_heads)
        n_kv = int(getattr(cfg, "n_key_value_heads", None) or n_heads)
        kv = comp.index // (n_heads // n_kv)
        attn = block.attn
        head_rows, kv_rows = (comp.index * d_head, (comp.index + 1) * d_head), (kv * d_head, (kv + 1) * d_head)
        return (
            _features(attn.q, names, "out", *head_rows)
            + _features(attn.k, names, "out", *kv_rows)
            + _features(attn.v, names, "out", *kv_rows)
            + _features(attn.o, names, "in", *head_rows, bias=False)
        )
    if comp.kind in ("mlp", "neuron"):
        mlp = block.mlp._modules
        layers_in = [mlp[n] for n in ("gate", "in") if n in mlp]
        d_mlp = _linear(mlp["out"]).weight.shape[_in_dim(_linear(mlp["out"]))]
        start, stop = (0, d_mlp) if comp.kind == "mlp" else (comp.index, comp.index + 1)
        slices = [s for layer in layers_in for s in _features(layer, names, "out", start, stop)]
        return slices + _features(mlp["out"], names, "in", start, stop, bias=comp.kind == "mlp")
    raise ValueError(f"{comp.id}: only heads, MLPs and neurons have parameters of their own")


def circuit_parameters(model: torch.nn.Module, components: Iterable[Component]) -> dict[str, list[ParamSlice]]:
    """Component id -> its parameter slices."""
    return {comp.id: component_parameters(model, comp) for comp in components}


def parameter_masks(model: torch.nn.Module, components: Iterable[Component]) -> dict[str, torch.Tensor]:
    """Parameter name -> boolean mask of the entries some component owns (parameters it never touches are absent)."""
    params = dict(model.named_parameters())
    masks: dict[str, torch.Tensor] = {}
    for slices in circuit_parameters(model, components).values():
        for s in slices:
            mask = masks.setdefault(s.param, torch.zeros_like(params[s.param], dtype=torch.bool))
            mask.narrow(s.dim, s.start, s.stop - s.start).fill_(True)
    return masks


@torch.no_grad()
def masked_weights(model: torch.nn.Module, masks: dict[str, torch.Tensor]) -> torch.Tensor:
    """The entries `masks` select, concatenated in parameter order (float32, on the CPU): one vector to compare across models."""
    params = dict(model.named_parameters())
    return torch.cat([params[name][mask.to(params[name].device)].float().cpu() for name, mask in sorted(masks.items())])


class GradientShare:
    """After a backward: the circuit's weight norm and the share of the gradient that lands on it.

    grad_share = |g_circuit|^2 / |g|^2 over all parameters with a gradient (squared norms, so the
    circuit's and the rest's shares add up to 1); param_share is the same share of parameter
    entries, the value grad_share would take if the gradient were spread evenly.
    """

    def __init__(self, model: torch.nn.Module, components: Sequence[Component], prefix: str = "circuit"):
        self.masks = parameter_masks(model, components)
        self.prefix = prefix
        total = sum(p.numel() for p in model.parameters())
        self.param_share = sum(int(m.sum()) for m in self.masks.values()) / total

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        weight_sq = grad_sq = total_sq = 0.0
        for name, p in model.named_parameters():
            mask = self.masks.get(name)
            if mask is not None:
                mask = mask.to(p.device)
                weight_sq += float(p[mask].float().square().sum())
            if p.grad is None:
                continue
            g = p.grad.float()
            total_sq += float(g.square().sum())
            if mask is not None:
                grad_sq += float(g[mask].square().sum())
        share = grad_sq / total_sq if total_sq > 0 else math.nan
        return {
            f"{self.prefix}.weight_norm": math.sqrt(weight_sq),
            f"{self.prefix}.grad_norm": math.sqrt(grad_sq),
            f"{self.prefix}.grad_share": share,
            f"{self.prefix}.param_share": self.param_share,
        }


class MeasuredUpdater:
    """An Updater that adds `measure(model)` to each step's stats (grads are still there after the step)."""

    def __init__(self, inner: Any, measure: Callable[[torch.nn.Module], dict[str, float]]):
        self.inner, self.measure = inner, measure

    def step(self, model: torch.nn.Module, batch: dict, loss_fn: Callable) -> dict[str, float]:
        return {**self.inner.step(model, batch, loss_fn), **self.measure(model)}

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


def _linear(bridge: torch.nn.Module) -> torch.nn.Module:
    return getattr(bridge, "original_component", None) or bridge


def _in_dim(layer: torch.nn.Module) -> int:
    """Axis of weight that indexes input features: 1 for nn.Linear [out, in], 0 for GPT-2's Conv1D [in, out]."""
    if isinstance(layer, torch.nn.Linear):
        return 1
    if type(layer).__name__ == "Conv1D":
        return 0
    raise TypeError(f"{type(layer).__name__}: unknown linear layer layout")


def _features(
    bridge: torch.nn.Module, names: dict[int, str], side: str, start: int, stop: int, bias: bool = True
) -> list[ParamSlice]:
    """Slices of a linear layer's output ('out') or input ('in') features start:stop; bias follows outputs."""
    layer = _linear(bridge)
    in_dim = _in_dim(layer)
    dim = in_dim if side == "in" else 1 - in_dim
    slices = [ParamSlice(names[id(layer.weight)], dim, start, stop)]
    if bias and getattr(layer, "bias", None) is not None:
        whole = side == "in"  # an input-side bias is the layer's, not a feature's
        slices.append(ParamSlice(names[id(layer.bias)], 0, 0 if whole else start, layer.bias.shape[0] if whole else stop))
    return slices
