"""Attribution patching: every component's patching effect from one forward and one backward per batch.

The estimate for a component is (a_source - a_base) . d metric / d a, taken on the base run: the
first-order Taylor expansion of activation patching around the run being patched.

transformer-lens's `attribution_patch` scores the same quantity but loops over the pairs one at a
time (one forward + backward per pair), scores only per-position heads/MLPs/embeddings (no
residual-stream rows, no whole-head or whole-MLP totals) and fixes the gradient on the
untriggered run. We therefore reuse its `cache_activation_and_gradient` (hooks, backward driven
without touching parameter .grad) on the whole batch at once and contract the slices ourselves.
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformer_lens.tools.analysis.attribution_patching import (
    cache_activation_and_gradient,
)

from whitebox.attribution.components import (
    Component,
    by_hook,
    eval_mode,
    model_components,
)
from whitebox.attribution.padding import attending, keep_base
from whitebox.attribution.scores import ComponentScores, forward_equivalents
from whitebox.tasks.pairs import ContrastPairs, Direction


def attribution_patching(
    model: torch.nn.Module,
    pairs: ContrastPairs,
    components: Sequence[Component] | None = None,
    direction: Direction = "noise",
) -> ComponentScores:
    """Linearised patching effect of each component: one source forward, one base forward + backward."""
    n_layers = int(model.cfg.n_layers)
    components = list(components) if components is not None else model_components(model, pairs.seq_len)
    device = next(model.parameters()).device
    pairs = pairs.to(device)
    base, source = pairs.runs(direction)
    base_mask, source_mask = pairs.masks(direction)
    groups = by_hook(components, n_layers)
    # The helper backfills the most upstream cached hook's gradient from autograd.grad's return,
    # which is None for a hook the bridge reshapes (hook_z alone gets no gradient); caching the
    # first residual stream too keeps a plain tensor upstream of everything we score.
    names = sorted(set(groups) | {"blocks.0.hook_resid_pre"})
    with eval_mode(model):
        with attending(model, source_mask):
            source_cache = cache_activation_and_gradient(model, source, pairs.mean_metric, names, compute_gradient=False)
        with attending(model, base_mask):
            base_cache = cache_activation_and_gradient(model, base, pairs.mean_metric, names)
    scores: dict[str, float] = {}
    for name, comps in groups.items():
        grad = base_cache.gradients.get(name)
        assert grad is not None, f"{name}: no gradient reached this hook"
        base_act = base_cache.activations[name]
        delta = keep_base(source_cache.activations[name], base_act, source_mask) - base_act  # same shape as the hook
        contrib = delta * grad  # batch pos ...: summed over the batch it is the mean-metric estimate
        for comp in comps:
            scores[comp.id] = float(comp.select(contrib).sum())
    ordered = {c.id: scores[c.id] for c in components}
    return ComponentScores(
        "attribution_patching",
        direction,
        ordered,
        float(base_cache.metric),
        float(source_cache.metric),
        {"forwards": 2, "backwards": 1, "forward_equivalents": forward_equivalents(2, 1)},
    )
