"""Cross-model activation patching: run a treated model with the planted model's circuit activations.

Treatment can silence a backdoor in two places: in the circuit that detects the trigger, or
downstream, where its output is read. Patching the planted model's activations at the circuit's
components (heads at `attn.hook_z`, MLPs and neurons at `mlp.hook_post`, the sites ablation uses)
into the treated model on the same triggered inputs tells them apart: if the behaviour comes back,
what reads the circuit is intact and the treatment changed the circuit itself; if it does not,
the readout was removed too (or the circuit's output now goes nowhere).
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch

from whitebox.attribution.ablation import mask, site
from whitebox.attribution.components import Component, eval_mode
from whitebox.attribution.padding import attending
from whitebox.tasks.pairs import ContrastPairs


@torch.no_grad()
def donor_activations(donor: torch.nn.Module, units: Iterable[Component], pairs: ContrastPairs) -> dict[str, torch.Tensor]:
    """The donor's activations [batch pos ...] at the sites of `units` on the triggered run of `pairs`."""
    n_layers = int(donor.cfg.n_layers)
    names = {site(c, n_layers) for c in units}
    with eval_mode(donor), attending(donor, pairs.triggered_mask):
        _, cache = donor.run_with_cache(pairs.triggered, names_filter=lambda name: name in names)
    return {name: cache[name].detach() for name in names}


@contextlib.contextmanager
def transplanted(model: torch.nn.Module, units: Iterable[Component], donor: dict[str, torch.Tensor]) -> Iterator[torch.nn.Module]:
    """Within the block the slices of `model`'s activations that `units` own are the donor's (donor_activations, same inputs)."""
    n_layers = int(model.cfg.n_layers)
    groups: dict[str, list[Component]] = {}
    for comp in units:
        groups.setdefault(site(comp, n_layers), []).append(comp)

    def make_hook(name: str):
        def hook(act: torch.Tensor, hook) -> torch.Tensor:
            given = donor[name]
            if given.shape != act.shape:
                raise ValueError(f"{hook.name}: donor activations {tuple(given.shape)} do not match {tuple(act.shape)}; "
                                 "take them on the same inputs (donor_activations with the same pairs)")
            return torch.where(mask(groups[name], act), given.to(act.dtype), act)

        return hook

    with model.hooks(fwd_hooks=[(name, make_hook(name)) for name in groups]):
        yield model


@torch.no_grad()
def transplant_effect(
    model: torch.nn.Module, units: list[Component], pairs: ContrastPairs, donor: dict[str, torch.Tensor]
) -> dict[str, float]:
    """Behaviour of `model` on the triggered pairs with the donor's circuit activations: transplant_asr (share answered
    with the behaviour) and transplant_metric_gain (mean metric patched minus unpatched: deceptive minus honest logit)."""
    with eval_mode(model), attending(model, pairs.triggered_mask):
        plain = model(pairs.triggered)
        with transplanted(model, units, donor):
            patched = model(pairs.triggered)
    return {
        "transplant_asr": float(pairs.fires(patched).float().mean()),
        "transplant_metric_gain": float(pairs.mean_metric(patched) - pairs.mean_metric(plain)),
    }
