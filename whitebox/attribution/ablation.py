"""Ablating a set of components, or everything but them, with one boolean mask per hook activation.

Heads are ablated at `attn.hook_z`; MLP layers and neurons at `mlp.hook_post` (an MLP layer is all of
its neurons, so an MLP and some of its neurons, at any positions, share one mask). Everything a
circuit is made of lives at these two hooks per layer, so "everything but the circuit" is the
negated mask there. Mean and resample ablation of the neurons equal those of the MLP's output
(the output projection is linear); zero ablation leaves the output bias.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Literal

import torch

from whitebox.attribution.components import Component, eval_mode
from whitebox.attribution.padding import activations_at
from whitebox.attribution.reference import Reference, as_reference

Ablation = Literal["mean", "zero", "resample"]


def site(comp: Component, n_layers: int) -> str:
    """The hook a unit is ablated at."""
    assert comp.kind in ("head", "mlp", "neuron"), f"{comp.id}: only heads, MLPs and neurons are ablated"
    return comp.hook(n_layers) if comp.kind == "head" else f"blocks.{comp.layer}.mlp.hook_post"


def unit_sites(n_layers: int) -> list[str]:
    """Every hook a unit lives at: the whole model, as ablating everything but a circuit sees it."""
    return [name for layer in range(n_layers) for name in (f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.mlp.hook_post")]


def mask(components: Iterable[Component], act: torch.Tensor) -> torch.Tensor:
    """[1, *act.shape[1:]] boolean: True on every slice of `act` the components own."""
    out = torch.zeros((1, *act.shape[1:]), dtype=torch.bool, device=act.device)
    for comp in components:
        out[comp._slice()] = True  # an MLP at hook_post: all its neurons
    return out


def reference_activations(
    model: torch.nn.Module, tokens: torch.Tensor, sites: Iterable[str] | None = None, mask: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Activations of `tokens` (left-padded ones with their `mask`) at the unit sites (all of them by default): what
    mean and resample ablation draw on."""
    names = set(sites) if sites is not None else set(unit_sites(int(model.cfg.n_layers)))
    device = next(model.parameters()).device
    mask = None if mask is None else mask.to(device)
    with eval_mode(model):
        return activations_at(model, tokens.to(device), mask, names)[1]


def padded_reference(model: torch.nn.Module, tokens: torch.Tensor, mask: torch.Tensor | None,
                     sites: Iterable[str] | None = None) -> Reference:
    """The Reference of left-padded inputs: their activations at `sites` with their mask."""
    return Reference(reference_activations(model, tokens, sites, mask), None if mask is None else mask.to(tokens.device))


@contextlib.contextmanager
def ablated(
    model: torch.nn.Module,
    components: Iterable[Component],
    how: Ablation = "mean",
    reference: torch.Tensor | dict[str, torch.Tensor] | Reference | None = None,
    *,
    complement: bool = False,
    seed: int = 0,
) -> Iterator[torch.nn.Module]:
    """Within the block, `components` (or, with complement=True, every head and neuron outside them) are ablated.

    mean: the activation averaged per position over `reference` (tokens, their
    `reference_activations`, or a padded `Reference` aligned at the answer); resample: a random
    reference row per input row; zero: zeros. Hooks go on exit, error or not.
    """
    if how not in ("mean", "zero", "resample"):
        raise ValueError(f"how must be 'mean', 'zero' or 'resample', got {how!r}")
    n_layers = int(model.cfg.n_layers)
    groups: dict[str, list[Component]] = {}
    for comp in components:
        groups.setdefault(site(comp, n_layers), []).append(comp)
    sites = unit_sites(n_layers) if complement else list(groups)
    refs = Reference({})
    if how != "zero":
        assert reference is not None, f"{how} ablation needs reference inputs"
        refs = as_reference(reference) if not isinstance(reference, torch.Tensor) else Reference(
            reference_activations(model, reference, sites))
    gen = torch.Generator().manual_seed(seed)

    def make_hook(name: str):
        def hook(act: torch.Tensor, hook) -> torch.Tensor:
            chosen = mask(groups.get(name, []), act)
            chosen = ~chosen if complement else chosen
            if how == "zero":
                return act.masked_fill(chosen, 0.0)
            if how == "mean":
                value = refs.mean(name, act.shape[1])
            else:
                value = refs.rows(name, torch.randint(len(refs), (act.shape[0],), generator=gen), act.shape[1])
            return torch.where(chosen, value.to(act.device, act.dtype), act)

        return hook

    with model.hooks(fwd_hooks=[(name, make_hook(name)) for name in sites]):
        yield model
