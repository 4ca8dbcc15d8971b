"""Path-integrated attribution patching (the node version of EAP-IG): attribution patching with k gradient points.

Attribution patching scores a component by (a_source - a_base) . g, with g the gradient of the
mean metric on the base run. Where the metric saturates along the way from base to source (a
trigger swapped through saturated nonlinearities), that gradient is near zero and the estimate far
too small. Here g is the gradient averaged over `steps` points on the path from the base run to the
source run: the input of the first block moves along the straight line from its base value to its
source value, alpha = 0, 1/k, ..., (k-1)/k (left Riemann sum), and everything downstream is
recomputed. k = 1 is the base run alone, i.e. attribution patching; as k grows the score tends to
(a_source - a_base) . integral of g over the path. For the first block's input that limit is the
integrated-gradients attribution (so its components sum to the whole effect); for a component
whose patch is the only difference between the runs it is the exact patching effect.

Hanna et al. (2024, EAP-IG) take the same equal-weight sum with the points shifted by one step
(including the source end, excluding the base), so their k = 1 is the gradient on the source run,
not attribution patching. transformer-lens 4.3's `attribution_patch` declares `ig_steps > 1`
(EAP-IG) but raises NotImplementedError, so we batch the k points ourselves and reuse its
`cache_activation_and_gradient` for the backward, as attribution_patching does.

Cost, in batched forwards over the pairs (a backward counts two): one source forward and one
forward + backward of a k-times repeated batch, 1 + 3k forward-equivalents.
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformer_lens.tools.analysis.attribution_patching import (
    GradientCache,
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

PATH_START = "blocks.0.hook_resid_pre"  # where the path is laid: the input of the first block
DEFAULT_STEPS = 2  # chosen on tuning seeds by the rule committed first (docs/BENCHMARKS.md); locate.attribution_steps


def integrated_patching(
    model: torch.nn.Module,
    pairs: ContrastPairs,
    components: Sequence[Component] | None = None,
    direction: Direction = "noise",
    steps: int = 1,
) -> ComponentScores:
    """Each component's activation change times the metric gradient averaged over `steps` points from base to source."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    n_layers = int(model.cfg.n_layers)
    components = list(components) if components is not None else model_components(model, pairs.seq_len)
    pairs = pairs.to(next(model.parameters()).device)
    source, source_mask = pairs.runs(direction)[1], pairs.masks(direction)[1]
    groups = by_hook(components, n_layers)
    names = sorted(set(groups) | {PATH_START})  # the path start also keeps a plain tensor upstream (attrib_patching.py)
    with eval_mode(model):
        with attending(model, source_mask):
            source_cache = cache_activation_and_gradient(model, source, pairs.mean_metric, names, compute_gradient=False)
        path, point_metrics = _path_cache(model, pairs, direction, source_cache.activations[PATH_START], names, steps)
    n = len(pairs)
    scores: dict[str, float] = {}
    for name, comps in groups.items():
        grad = path.gradients.get(name)
        assert grad is not None, f"{name}: no gradient reached this hook"
        grad = grad.view(steps, n, *grad.shape[1:]).mean(0)  # batch pos ...: the gradient averaged over the path
        base_act = path.activations[name][:n]  # rows [:n] are the base run (alpha 0)
        delta = keep_base(source_cache.activations[name], base_act, source_mask) - base_act
        contrib = delta * grad  # batch pos ...: summed over the batch it is the mean-metric estimate
        for comp in comps:
            scores[comp.id] = float(comp.select(contrib).sum())
    ordered = {c.id: scores[c.id] for c in components}
    cost = {"steps": steps, "forwards": 1 + steps, "backwards": steps}
    extra = {**cost, "forward_equivalents": forward_equivalents(cost["forwards"], cost["backwards"])}
    return ComponentScores("integrated_patching", direction, ordered, point_metrics[0], float(source_cache.metric), extra)


def path_points(steps: int) -> torch.Tensor:
    """The k path positions alpha = 0, 1/k, ..., (k-1)/k (0: the base run, 1: the source run)."""
    return torch.arange(steps, dtype=torch.float64) / steps


def _path_cache(
    model: torch.nn.Module,
    pairs: ContrastPairs,
    direction: Direction,
    source_start: torch.Tensor,
    names: list[str],
    steps: int,
) -> tuple[GradientCache, list[float]]:
    """Activations and gradients at every path point in one batch of steps x pairs rows; the mean metric per point."""
    n, points = len(pairs), pairs.repeat(steps)
    (base, _), (base_mask, source_mask) = points.runs(direction), points.masks(direction)
    alpha = path_points(steps).to(source_start).repeat_interleave(n)[:, None, None]  # (steps batch) 1 1
    target = source_start.repeat(steps, 1, 1)  # (steps batch) pos d_model

    def move(act: torch.Tensor, hook: object) -> torch.Tensor:
        end = keep_base(target, act, source_mask)  # where the source is padding the path stays at the base
        return act + (alpha * (end - act)).detach()  # alpha 0 adds exactly zero: the base run itself

    point_metrics: list[float] = []

    def metric(logits: torch.Tensor) -> torch.Tensor:
        per_point = points.metric(logits).view(steps, n).mean(1)  # steps
        point_metrics.extend(per_point.tolist())
        return per_point.sum()  # each point's rows get the gradient of that point's mean metric

    with attending(model, base_mask), model.hooks(fwd_hooks=[(PATH_START, move)]):  # move first: the cache sees it
        cache = cache_activation_and_gradient(model, base, metric, names)
    return cache, point_metrics
