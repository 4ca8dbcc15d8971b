"""Integrated gradients (through Captum) for input embeddings and any hook activation, with completeness.

The path runs on the base tokens, with one hook's activation moved from its base value to the
source value (the paired run's, or zeros); everything else the model computes from the base
tokens. Completeness then says: the attributions sum to metric(base, hook := source) -
metric(base), i.e. to the activation-patching effect of the whole hook. Captum's convergence
delta measures exactly that gap, because its forward function here takes the activation itself.
(LayerIntegratedGradients would compare against metric(source tokens) - metric(base tokens),
which only equals the path's endpoints for a hook every path goes through, such as the embedding.)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from whitebox.attribution.components import (
    Component,
    by_hook,
    canonical_hook,
    eval_mode,
    model_components,
)
from whitebox.attribution.padding import attending, keep_base
from whitebox.attribution.scores import ComponentScores
from whitebox.tasks.pairs import ContrastPairs, Direction

Source = Literal["pair", "zero"]
EMBED_HOOK = "hook_embed"
COMPLETENESS_TOLERANCE = 0.05  # above this share of a hook's patching effect missing, IG has not converged


@dataclass
class IGResult:
    """Per-pair attributions over one hook activation, and how far they are from complete."""

    hook: str  # canonical hook name
    attributions: torch.Tensor  # batch, *activation shape
    effect: torch.Tensor  # batch: metric(base, hook := source) - metric(base)
    delta: torch.Tensor  # batch: sum(attributions) - effect (Captum's convergence delta)
    steps: int

    def completeness(self) -> dict[str, float]:
        """Summed |delta| as a share of summed |effect|, and the worst single pair's |delta|."""
        scale = float(self.effect.abs().sum()) or 1.0
        return {"rel_error": float(self.delta.abs().sum()) / scale, "max_abs_delta": float(self.delta.abs().max())}


def integrated_gradients(
    model: torch.nn.Module,
    pairs: ContrastPairs,
    hook: str,
    steps: int = 32,
    direction: Direction = "noise",
    source: Source = "pair",
    internal_batch_size: int | None = None,
) -> IGResult:
    """IG of the per-pair metric with respect to the activation at `hook` (any alias or name)."""
    device = next(model.parameters()).device
    pairs = pairs.to(device)
    base, other = pairs.runs(direction)
    base_mask, other_mask = pairs.masks(direction)
    with eval_mode(model):
        base_act = _capture(model, base, hook, base_mask)
        if source == "pair":
            source_act = keep_base(_capture(model, other, hook, other_mask), base_act, other_mask)
        else:
            source_act = torch.zeros_like(base_act)

        def forward(act: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
            with attending(model, mask):
                logits = model.run_with_hooks(tokens, fwd_hooks=[(hook, lambda _, hook: act)])
            return pairs.repeat(len(tokens) // len(pairs)).metric(logits)  # batch; Captum tiles the pairs

        from captum.attr import IntegratedGradients  # here: captum's import pulls IPython and pyplot (seconds)

        attributions, delta = IntegratedGradients(forward).attribute(
            source_act,
            baselines=base_act,
            additional_forward_args=(base, base_mask),
            n_steps=steps,
            internal_batch_size=internal_batch_size,
            return_convergence_delta=True,
        )
        with torch.no_grad():
            effect = forward(source_act, base, base_mask) - forward(base_act, base, base_mask)
    return IGResult(canonical_hook(model, hook), attributions.detach(), effect.detach(), delta.detach(), steps)


def input_attributions(
    model: torch.nn.Module, pairs: ContrastPairs, steps: int = 32, direction: Direction = "noise", source: Source = "pair"
) -> tuple[torch.Tensor, IGResult]:
    """IG on the token embeddings, summed over d_model: ([batch, pos] per-token attributions, full result)."""
    result = integrated_gradients(model, pairs, EMBED_HOOK, steps, direction, source)
    return result.attributions.sum(-1), result


def ig_component_scores(
    model: torch.nn.Module,
    pairs: ContrastPairs,
    components: Sequence[Component] | None = None,
    steps: int = 32,
    direction: Direction = "noise",
    internal_batch_size: int | None = None,
) -> ComponentScores:
    """Mean IG attribution per component, one IG run per hook; completeness per hook in `extra`."""
    n_layers = int(model.cfg.n_layers)
    components = list(components) if components is not None else model_components(model, pairs.seq_len)
    scores: dict[str, float] = {}
    completeness: dict[str, dict[str, float]] = {}
    for hook, comps in by_hook(components, n_layers).items():
        result = integrated_gradients(model, pairs, hook, steps, direction, "pair", internal_batch_size)
        completeness[result.hook] = result.completeness()
        for comp in comps:
            scores[comp.id] = float(comp.select(result.attributions).sum()) / len(pairs)
    pairs = pairs.to(next(model.parameters()).device)
    (base, other), (base_mask, other_mask) = pairs.runs(direction), pairs.masks(direction)
    with eval_mode(model), torch.no_grad():
        with attending(model, base_mask):
            base_metric = float(pairs.mean_metric(model(base)))
        with attending(model, other_mask):
            source_metric = float(pairs.mean_metric(model(other)))
    worst_hook, worst = max(((h, c["rel_error"]) for h, c in completeness.items()), key=lambda x: x[1],
                            default=(None, 0.0))
    if worst > COMPLETENESS_TOLERANCE:
        warnings.warn(f"integrated gradients at {steps} steps has not converged: at {worst_hook} the attributions miss "
                      f"{worst:.0%} of the hook's patching effect (tolerance {COMPLETENESS_TOLERANCE:.0%}); take more "
                      f"steps (locate.ig_steps: {4 * steps}) before reading IG scores", stacklevel=2)
    extra = {"steps": steps, "completeness": completeness, "completeness_rel_error_max": worst}
    ordered = {c.id: scores[c.id] for c in components}
    return ComponentScores("integrated_gradients", direction, ordered, base_metric, source_metric, extra)


def _capture(model: torch.nn.Module, tokens: torch.Tensor, hook: str, mask: torch.Tensor | None) -> torch.Tensor:
    """The activation at `hook` for `tokens`, detached."""
    with torch.no_grad(), attending(model, mask):
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name == hook)
    assert hook in cache, f"{hook}: the model never ran this hook"
    return cache[hook].detach()
