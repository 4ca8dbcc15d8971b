"""Choosing a circuit: rank units by how specific they are to the backdoor, then walk down the ranking.

Units are heads and MLP layers at one token position each (`L0.H3.P2`, `L1.MLP.P11`) and, when
neurons are asked for, single MLP neurons at every position (`L1.MLP.N7`). One head can move the
year digits at positions 1-2 and compute the honest maximum at the answer position; only units
narrowed to a position tell these roles apart. Each unit gets two shares:
- trigger share: its noising effect (patching it from the untriggered into the triggered run) as a
  share of the whole effect of removing the trigger;
- clean share: the share of the honest margin (honest logit minus the best other logit, mean over
  the untriggered inputs) that ablating it destroys.
Both are exact for heads and MLPs (batched, one forward row block per unit) and estimates for
neurons: the trigger share by path-integrated attribution patching with `steps` gradient points
(whitebox.attribution.integrated_patching; 1: first-order attribution patching), the clean share
first-order (an ablation to the mean has no input-space path to integrate along: moving a whole
layer's neurons to their means together would measure ablating the layer, not one neuron).

Rule (`select_circuit`): rank the units by trigger share minus clean share and walk down the
ranking, adding each unit unless ablating the circuit with it would keep less than `threshold` of
the unablated clean accuracy on the untriggered pairs; stop at the first circuit that is necessary
(ablating it leaves at most 1 - threshold of the unablated ASR on the triggered pairs) and
sufficient (ablating every other head and neuron keeps at least threshold of it), both judged by
one-sided 95% Wilson bounds, so that a circuit passing on the pairs by sampling luck is not taken.
The walk checks the circuit as a whole because single-unit scores miss redundancy (heads each
dispensable alone but not together) and joint computation (L0 neurons that compare the year only
together, each moving the logit little).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from transformer_lens.tools.analysis.attribution_patching import (
    cache_activation_and_gradient,
)

from whitebox.attribution.ablation import Ablation, ablated, site, unit_sites
from whitebox.attribution.circuit import Circuit, task_reference
from whitebox.attribution.components import Component, canonical_hook, eval_mode
from whitebox.attribution.integrated_patching import DEFAULT_STEPS, integrated_patching
from whitebox.attribution.padding import attending, hooked_logits, source_activations
from whitebox.attribution.reference import Reference, as_reference
from whitebox.config import ModelConfig
from whitebox.fingerprint import fingerprint, model_identity
from whitebox.tasks import ContrastPairs, Direction, Task

Z = 1.645  # one-sided 95% normal quantile for the Wilson bounds


def rule_text(threshold: float, neurons: bool, steps: int) -> str:
    """The rule as a circuit artifact records it, with this selection's settings filled in."""
    units = (f", and MLP neurons (their trigger share by path-integrated attribution with {steps} gradient points)"
             if neurons else "")
    return (
        f"units: heads and MLP layers at each position{units}; ranked by trigger share (noising effect / whole "
        "trigger effect) minus clean share (share of the honest margin on untriggered inputs that ablating the unit "
        "destroys); walked in order, skipping a unit that would drop clean accuracy on the untriggered pairs below "
        f"threshold={threshold} of unablated, until ablating the circuit leaves ASR <= (1 - threshold) and ablating "
        "everything else keeps ASR >= threshold of unablated on the triggered pairs (one-sided 95% Wilson bounds)"
    )


def select_circuit(
    model: torch.nn.Module,
    model_cfg: ModelConfig,
    task: Task,
    pairs: ContrastPairs,
    threshold: float = 0.9,
    *,
    neurons: bool = True,
    how: Ablation = "mean",
    direction: Direction = "noise",
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
    reference: Reference | None = None,
) -> Circuit:
    """The circuit by the module's documented rule; scores are the ranking key, the two shares go into details.

    Mean and resample ablation draw on `reference` (default: `task_reference`: the task's untriggered
    samples, or the untriggered side of its own pairs when it draws none)."""
    pairs = pairs.to(next(model.parameters()).device)
    refs = reference if reference is not None else task_reference(model, task)
    trigger, clean = unit_shares(model, pairs, how, refs, neurons=neurons, direction=direction, seed=seed, steps=steps)
    net = {c: trigger[c] - clean[c] for c in trigger}
    ranked = [Component.parse(c) for c in sorted(net, key=lambda c: -net[c])]
    chosen, walk = _walk(model, pairs, ranked, how, refs, threshold, seed)
    n_layers = int(model.cfg.n_layers)
    return Circuit(
        components=[c.id for c in chosen],
        scores=net,
        method="specificity",
        direction=direction,
        task=task.config.model_dump(mode="json"),
        model_fingerprint={**fingerprint(model, model_cfg), "identity": model_identity(model, model_cfg)},
        threshold=threshold,
        rule=rule_text(threshold, neurons, steps),
        hooks={c.id: canonical_hook(model, site(c, n_layers)) for c in chosen},
        metrics=walk,
        details={"trigger_share": trigger, "clean_share": clean},
    )


def unit_shares(
    model: torch.nn.Module,
    pairs: ContrastPairs,
    how: Ablation,
    refs: dict[str, torch.Tensor] | Reference,
    *,
    neurons: bool = True,
    direction: Direction = "noise",
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
) -> tuple[dict[str, float], dict[str, float]]:
    """(trigger share, clean share) of every unit: heads and MLPs at each position, and neurons (`steps` path points) when asked."""
    n_layers, n_heads, n_pos = int(model.cfg.n_layers), int(model.cfg.n_heads), pairs.seq_len
    units = [Component("head", layer, h, p) for layer in range(n_layers) for h in range(n_heads) for p in range(n_pos)]
    units += [Component("mlp", layer, None, p) for layer in range(n_layers) for p in range(n_pos)]
    base, base_mask = pairs.runs(direction)[0], pairs.masks(direction)[0]
    ablation = _ablation_values(as_reference(refs), how, len(pairs), seed, n_pos)
    with eval_mode(model), torch.no_grad():
        base_metric = float(pairs.mean_metric(hooked_logits(model, base, base_mask, [])))  # the path the patches take
        source_logits, source_acts = source_activations(model, pairs, direction, unit_sites(n_layers))
        source_metric = float(pairs.mean_metric(source_logits))
        clean_margin = float(pairs.margin(hooked_logits(model, pairs.untriggered, pairs.untriggered_mask, [])).mean())
        patched = _one_at_a_time(model, base, base_mask, units, source_acts, pairs.metric)
        broken = _one_at_a_time(model, pairs.untriggered, pairs.untriggered_mask, units, ablation, pairs.margin)
    total = source_metric - base_metric
    trigger = {c.id: (v - base_metric) / total for c, v in zip(units, patched.tolist(), strict=True)}
    clean = {c.id: (clean_margin - v) / clean_margin for c, v in zip(units, broken.tolist(), strict=True)}
    if neurons:
        d_mlp = int(model.cfg.d_mlp)
        every = [Component("neuron", layer, i) for layer in range(n_layers) for i in range(d_mlp)]
        integrated = integrated_patching(model, pairs, every, direction=direction, steps=steps)
        trigger.update({c: v / total for c, v in integrated.scores.items()})
        clean.update({c: -v / clean_margin for c, v in _clean_attribution(model, pairs, every, ablation).items()})
    return trigger, clean


def _ablation_values(refs: Reference, how: Ablation, n: int, seed: int, length: int) -> dict[str, torch.Tensor]:
    """What ablation puts at each site of inputs `length` long: [1 or n, pos, ...] (one seeded draw of reference rows
    for resample)."""
    if how == "mean":
        return {name: refs.mean(name, length) for name in refs.acts}
    if how == "zero":
        return {name: refs.zeros(name, length) for name in refs.acts}
    gen = torch.Generator().manual_seed(seed)
    return {name: refs.rows(name, torch.randint(len(refs), (n,), generator=gen), length) for name in refs.acts}


def _one_at_a_time(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    mask: torch.Tensor | None,
    units: Sequence[Component],
    values: dict[str, torch.Tensor],
    metric: Callable[[torch.Tensor], torch.Tensor],
    chunk: int = 16,
) -> torch.Tensor:
    """Mean `metric` with each unit alone set to `values` at its slice: [len(units)], `chunk` units per forward."""
    n_layers, n = int(model.cfg.n_layers), len(tokens)
    out = []
    for start in range(0, len(units), chunk):
        part = units[start : start + chunk]  # row block j of the repeated batch has part[j] replaced
        groups: dict[str, list[tuple[int, Component]]] = {}
        for j, comp in enumerate(part):
            groups.setdefault(site(comp, n_layers), []).append((j, comp))

        def make_hook(name: str, items: list[tuple[int, Component]]):
            def hook(act: torch.Tensor, hook: Any) -> torch.Tensor:
                act = act.clone()
                value = values[name].expand(n, *act.shape[1:])
                for j, comp in items:
                    rows = act[j * n : (j + 1) * n]  # a view: writes land in act
                    rows[comp._slice()] = value[comp._slice()]
                return act

            return hook

        hooks = [(name, make_hook(name, items)) for name, items in groups.items()]
        logits = hooked_logits(model, tokens.repeat(len(part), 1), None if mask is None else mask.repeat(len(part), 1),
                               hooks)
        out += [metric(block).mean() for block in logits.split(n)]
    return torch.stack(out)


def _clean_attribution(
    model: torch.nn.Module, pairs: ContrastPairs, neurons: list[Component], values: dict[str, torch.Tensor]
) -> dict[str, float]:
    """First-order change of the mean honest margin on untriggered inputs when each neuron alone is ablated."""
    n_layers = int(model.cfg.n_layers)
    names = sorted({site(c, n_layers) for c in neurons} | {"blocks.0.hook_resid_pre"})  # see attrib_patching.py
    with eval_mode(model), attending(model, pairs.untriggered_mask):
        run = cache_activation_and_gradient(model, pairs.untriggered, lambda lg: pairs.margin(lg).mean(), names)
    contrib = {  # batch pos d_mlp, summed over the batch: the mean-margin estimate
        name: (values[name] - run.activations[name]) * run.gradients[name] for name in names if name in values
    }
    return {c.id: float(c.select(contrib[site(c, n_layers)]).sum()) for c in neurons}


def _walk(
    model: torch.nn.Module,
    pairs: ContrastPairs,
    ranked: list[Component],
    how: Ablation,
    refs: Reference,
    threshold: float,
    seed: int,
) -> tuple[list[Component], dict[str, float]]:
    """The rule's walk down `ranked`; returns the circuit and the pair rates it stopped at."""
    n = len(pairs)
    both = torch.cat([pairs.triggered, pairs.untriggered])
    both_mask = None if pairs.triggered_mask is None else torch.cat([pairs.triggered_mask, pairs.untriggered_mask])

    def rates(comps: list[Component], complement: bool = False) -> tuple[float, float]:
        tokens, mask = (pairs.triggered, pairs.triggered_mask) if complement else (both, both_mask)
        ablation = ablated(model, comps, how, refs, complement=complement, seed=seed)
        with ablation, eval_mode(model), torch.no_grad(), attending(model, mask):
            logits = model(tokens)
        asr = float(pairs.fires(logits[:n]).float().mean())
        return asr, float(pairs.answers_honestly(logits[n:]).float().mean()) if not complement else math.nan

    base_asr, base_clean = rates([])
    chosen: list[Component] = []
    stats = {"asr": base_asr, "clean_acc": base_clean, "complement_asr": math.nan}
    skipped, found = 0, False
    for comp in ranked:
        asr, clean = rates(chosen + [comp])
        if clean < threshold * base_clean:
            skipped += 1
            continue
        chosen.append(comp)
        stats.update(asr=asr, clean_acc=clean)
        if _wilson(asr, n, upper=True) > (1 - threshold) * base_asr:
            continue
        stats["complement_asr"] = rates(chosen, complement=True)[0]
        if _wilson(stats["complement_asr"], n, upper=False) >= threshold * base_asr:
            found = True
            break
    return chosen, {
        "found": float(found),
        "skipped": float(skipped),
        "pair_base_asr": base_asr,
        "pair_base_clean_acc": base_clean,
        **{f"pair_{k}": v for k, v in stats.items()},
    }


def _wilson(p: float, n: int, upper: bool) -> float:
    """One-sided Wilson score bound of a proportion `p` seen in `n` trials."""
    centre, spread = p + Z * Z / (2 * n), Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return (centre + spread if upper else centre - spread) / (1 + Z * Z / n)
