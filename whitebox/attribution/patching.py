"""Activation patching: one forward per component, batched over all pairs (transformer-lens's sweep)."""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence
from unittest import mock

import pandas as pd
import torch
from transformer_lens import patching as tl_patching

from whitebox.attribution.components import Component, by_hook, eval_mode, model_components
from whitebox.attribution.padding import attending, hooked_logits, source_activations
from whitebox.attribution.scores import ComponentScores
from whitebox.tasks.pairs import ContrastPairs, Direction


def activation_patching(
    model: torch.nn.Module,
    pairs: ContrastPairs,
    components: Sequence[Component] | None = None,
    direction: Direction = "noise",
) -> ComponentScores:
    """Exact effect of patching each component from the source run into the base run.

    Wraps `transformer_lens.patching.generic_activation_patch` with one index table per hook family
    (heads, MLPs, neurons, residual positions), so every component costs one batched forward.
    """
    n_layers = int(model.cfg.n_layers)
    components = list(components) if components is not None else model_components(model, pairs.seq_len)
    pairs = pairs.to(next(model.parameters()).device)
    base, base_mask = pairs.runs(direction)[0], pairs.masks(direction)[0]
    families: dict[tuple[str, str], list[Component]] = {}
    for comp in components:
        short, _ = comp.act_name(n_layers)
        families.setdefault((comp.kind, short), []).append(comp)
    with eval_mode(model), torch.no_grad(), _quiet_sweeps():
        source_logits, source_cache = source_activations(model, pairs, direction, {c.hook(n_layers) for c in components},
                                                          fast=False)  # the sweep below runs the bridge
        source_metric = float(pairs.mean_metric(source_logits))
        with attending(model, base_mask):
            base_metric = float(pairs.mean_metric(model(base)))
        scores: dict[str, float] = {}
        for (kind, short), comps in families.items():
            index_df = pd.DataFrame([_index(c, n_layers) for c in comps], columns=_COLUMNS[kind])
            with attending(model, base_mask):
                patched = tl_patching.generic_activation_patch(
                    model, base, source_cache, pairs.mean_metric, _SETTERS[kind], short, index_df=index_df
                )  # [len(comps)], one forward each
            scores.update({c.id: float(v) - base_metric for c, v in zip(comps, patched.tolist(), strict=True)})
    ordered = {c.id: scores[c.id] for c in components}
    forwards = len(components) + 2 + (base_mask is not None)  # padded pairs: the base run fills the source's padding
    extra = {"forwards": forwards, "backwards": 0, "forward_equivalents": forwards}
    return ComponentScores("activation_patching", direction, ordered, base_metric, source_metric, extra)


def patch_metric(
    model: torch.nn.Module, pairs: ContrastPairs, components: Sequence[Component], direction: Direction = "noise"
) -> float:
    """Mean metric of the base run with all `components` patched from the source run at once."""
    n_layers = int(model.cfg.n_layers)
    pairs = pairs.to(next(model.parameters()).device)
    base, base_mask = pairs.runs(direction)[0], pairs.masks(direction)[0]
    groups = by_hook(components, n_layers)
    with eval_mode(model), torch.no_grad():
        _, cache = source_activations(model, pairs, direction, groups)

        def make_hook(name: str, comps: list[Component]):
            def hook(act: torch.Tensor, hook) -> torch.Tensor:
                for comp in comps:
                    act = comp.replace(act, comp.select(cache[name]))
                return act

            return hook

        logits = hooked_logits(model, base, base_mask, [(n, make_hook(n, cs)) for n, cs in groups.items()])
    return float(pairs.mean_metric(logits))


_COLUMNS = {"head": ["layer", "head"], "mlp": ["layer"], "neuron": ["layer", "neuron"], "resid": ["layer", "pos"]}


def _index(comp: Component, n_layers: int) -> list[int]:
    _, layer = comp.act_name(n_layers)  # the final residual row lives in the last block's resid_post
    return [layer] if comp.kind == "mlp" else [layer, int(comp.index)]


def _whole_patch_setter(corrupted: torch.Tensor, index: list[int], clean: torch.Tensor) -> torch.Tensor:
    """index = [layer]: replace the whole activation (an MLP's output at every position)."""
    corrupted[...] = clean
    return corrupted


def _last_axis_patch_setter(corrupted: torch.Tensor, index: list[int], clean: torch.Tensor) -> torch.Tensor:
    """index = [layer, neuron]: replace one neuron at every position."""
    corrupted[..., index[1]] = clean[..., index[1]]
    return corrupted


# transformer-lens ships the head (all positions) and residual (layer, pos) setters; the whole-MLP
# and per-neuron ones it lacks are the two above.
_SETTERS = {
    "head": tl_patching.layer_head_vector_patch_setter,
    "mlp": _whole_patch_setter,
    "neuron": _last_axis_patch_setter,
    "resid": tl_patching.layer_pos_patch_setter,
}


@contextlib.contextmanager
def _quiet_sweeps() -> Iterator[None]:
    """generic_activation_patch draws a tqdm bar per call and takes no option to turn it off."""
    with mock.patch.object(tl_patching, "tqdm", lambda rows, **_: rows):
        yield
