"""Protocol step 2 (circuit half): score every component, pick the circuit, check it by ablation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
from datasets import Dataset

from whitebox.attribution.ablation import Ablation
from whitebox.attribution.attrib_patching import attribution_patching
from whitebox.attribution.circuit import Circuit, task_reference
from whitebox.attribution.components import UNIT_KINDS, Component, eval_mode
from whitebox.attribution.integrated_gradients import ig_component_scores
from whitebox.attribution.integrated_patching import DEFAULT_STEPS, integrated_patching
from whitebox.attribution.padding import attending
from whitebox.attribution.patching import activation_patching
from whitebox.attribution.reference import Reference
from whitebox.attribution.scores import ComponentScores, agreement
from whitebox.attribution.selection import select_circuit
from whitebox.config import ModelConfig
from whitebox.runtime.figures import save_figure, subplots
from whitebox.tasks import ContrastPairs, Direction, Task, has, require
from whitebox.tasks.pairs import tokenized_pairs


def locate_circuit(
    model: torch.nn.Module,
    model_cfg: ModelConfig,
    task: Task,
    n_pairs: int = 256,
    seed: int = 0,
    *,
    threshold: float = 0.9,
    neurons: bool = True,
    direction: Direction = "noise",
    ablation: Ablation = "mean",
    ig_steps: int = 0,
    attribution_steps: int = DEFAULT_STEPS,
    eval_data: Dataset | None = None,
    reference: Reference | None = None,
) -> tuple[Circuit, dict[str, float]]:
    """Patch, attribute, select and ablate; returns the circuit and flat metrics for a run summary.

    The circuit follows `whitebox.attribution.selection`'s rule with `threshold`; single MLP
    neurons are candidates when `neurons`, scored by path-integrated attribution with `attribution_steps`
    gradient points (1: attribution patching). Metrics: patching_spearman (that attribution vs activation
    patching over all components), patching_spearman_units (heads and MLPs only), patching_spearman_k1
    (plain attribution patching vs activation patching), attribution_steps, attribution_forward_equivalents,
    circuit_size (circuit_heads,
    circuit_mlps, circuit_neurons; a head or MLP at one position counts once), circuit_found (1:
    the selection's stopping test passed) and circuit_pair_* (the pair rates it stopped at), the
    unablated base_* numbers, ablation_* (circuit ablated) and complement_ablation_* (everything
    else ablated), each with asr, clean_acc and logit_diff (mean over triggered contrast pairs),
    and *_logit_diff_removed (share of the triggered-untriggered gap the ablation closes); with
    ig_steps > 0 also ig_spearman and ig_completeness_error. Scores of the other methods and the
    most disagreeing components go into circuit.details.

    Any task with contrast pairs will do: a text task's pairs (of any lengths) are tokenised by the
    model's tokenizer, and mean and resample ablation draw on `reference` (default `task_reference`).
    A task without samples to evaluate (no `sample`) has its asr and clean_acc measured on the pairs:
    the share of triggered pairs answered from `answers.a`, of untriggered ones from `answers.b`.
    """
    require(task, "contrast_pairs", "locating a circuit")
    pairs = tokenized_pairs(task, n_pairs, seed, model).to(next(model.parameters()).device)
    reference = reference if reference is not None else task_reference(model, task)
    exact = activation_patching(model, pairs, direction=direction)
    linear = attribution_patching(model, pairs, direction=direction)
    fast = integrated_patching(model, pairs, direction=direction, steps=attribution_steps)
    overall = agreement(exact, fast)
    units = agreement(exact.subset(UNIT_KINDS), fast.subset(UNIT_KINDS))
    metrics: dict[str, float] = {
        "patching_spearman": overall["spearman"],
        "patching_spearman_units": units["spearman"],
        "patching_spearman_k1": agreement(exact, linear)["spearman"],
        "attribution_steps": float(attribution_steps),
        "attribution_forward_equivalents": float(fast.extra["forward_equivalents"]),
        "n_components": float(len(exact.scores)),
    }
    details: dict[str, Any] = {
        "n_pairs": n_pairs,
        "seed": seed,
        "scores": {m.method: m.to_json() for m in (exact, linear, fast)},
        "disagree": overall["disagree"],
        "largest_gaps": overall["largest_gaps"],
    }
    if ig_steps > 0:
        ig = ig_component_scores(model, pairs, steps=ig_steps, direction=direction)
        metrics["ig_spearman"] = agreement(exact, ig)["spearman"]
        metrics["ig_completeness_error"] = ig.extra["completeness_rel_error_max"]
        details["scores"][ig.method] = ig.to_json()
    circuit = select_circuit(
        model, model_cfg, task, pairs, threshold, neurons=neurons, how=ablation,
        direction=direction, seed=seed, steps=attribution_steps, reference=reference,
    )
    kinds = [Component.parse(c).kind for c in circuit.components]
    metrics["circuit_size"] = float(len(kinds))
    metrics.update({f"circuit_{k}s": float(kinds.count(k)) for k in ("head", "mlp", "neuron")})
    metrics.update({f"circuit_{k}": v for k, v in circuit.metrics.items()})  # found, skipped, pair rates
    data = eval_data if eval_data is not None or not has(task, "sample") else task.eval_set(seed)
    metrics.update(faithfulness(circuit, model, task, pairs, data, how=ablation, model_cfg=model_cfg,
                                reference=reference))
    circuit.metrics = dict(metrics)
    circuit.details.update(details)
    return circuit, metrics


def faithfulness(
    circuit: Circuit,
    model: torch.nn.Module,
    task: Task,
    pairs: ContrastPairs,
    data: Dataset | None,
    how: Ablation = "mean",
    model_cfg: ModelConfig | None = None,
    reference: torch.Tensor | dict[str, torch.Tensor] | Reference | None = None,
) -> dict[str, float]:
    """ASR, clean accuracy and logit difference with nothing, the circuit, or everything else ablated.

    ASR and clean accuracy are the task's evaluation on `data`, or with data=None the pair rates
    (triggered pairs that fire, untriggered pairs answered honestly); ablation draws on `reference`
    (default: the circuit's, see Circuit.ablate).
    """
    device = next(model.parameters()).device
    pairs = pairs.to(device)
    with eval_mode(model), torch.no_grad(), attending(model, pairs.untriggered_mask):
        untriggered = float(pairs.mean_metric(model(pairs.untriggered)))
    out: dict[str, float] = {}
    for prefix, ctx in (
        ("base", None),
        ("ablation", dict(complement=False)),
        ("complement_ablation", dict(complement=True)),
    ):
        if ctx is None:
            row = _behaviour(model, task, pairs, data)
        else:
            with circuit.ablate(model, how, model_cfg=model_cfg, reference=reference, **ctx):
                row = _behaviour(model, task, pairs, data)
        out.update({f"{prefix}_{k}": v for k, v in row.items()})
    gap = out["base_logit_diff"] - untriggered
    for prefix in ("ablation", "complement_ablation"):
        removed = (out["base_logit_diff"] - out[f"{prefix}_logit_diff"]) / gap if gap else math.nan
        out[f"{prefix}_logit_diff_removed"] = removed
    return out


def _behaviour(model: torch.nn.Module, task: Task, pairs: ContrastPairs, data: Dataset | None) -> dict[str, float]:
    with eval_mode(model), torch.no_grad(), attending(model, pairs.triggered_mask):
        triggered = model(pairs.triggered)
    if data is not None:
        scores = task.evaluate(model, data)
    else:
        with eval_mode(model), torch.no_grad(), attending(model, pairs.untriggered_mask):
            honest = pairs.answers_honestly(model(pairs.untriggered))
        scores = {"asr": float(pairs.fires(triggered).float().mean()), "clean_acc": float(honest.float().mean())}
    return {"asr": scores["asr"], "clean_acc": scores["clean_acc"], "logit_diff": float(pairs.mean_metric(triggered))}


def plot_component_scores(
    scores: Circuit | ComponentScores | Sequence[ComponentScores], path: str | Path, circuit: Circuit | None = None
) -> Path:
    """PNG heatmaps, one row per method: layer x (heads, MLP) and residual layer x position.

    Cells are shares of the total effect on one colour scale for the whole figure, so methods
    compare at a glance; circuit heads and MLPs are boxed (dashed: narrowed to some positions or neurons).
    Given a circuit from `locate_circuit`, plots every method it was scored with.
    """
    import matplotlib.pyplot as plt

    if isinstance(scores, Circuit):
        circuit = circuit or scores
        rows = [ComponentScores.from_json(d) for d in scores.details.get("scores", {}).values()]
        if not rows:
            raise ValueError("this circuit carries no per-method scores (details.scores); pass ComponentScores")
    else:
        rows = [scores] if isinstance(scores, ComponentScores) else list(scores)
    comps = rows[0].components
    n_layers = 1 + max(c.layer for c in comps if c.kind in UNIT_KINDS)
    n_heads = 1 + max((c.index for c in comps if c.kind == "head"), default=-1)
    n_pos = 1 + max((c.index for c in comps if c.kind == "resid"), default=0)
    grids = []
    for row in rows:
        units, resid = torch.full((n_layers, n_heads + 1), math.nan), torch.full((n_layers + 1, n_pos), math.nan)
        for cid, v in row.normalized().items():
            c = Component.parse(cid)
            if c.kind == "resid":
                resid[c.layer, c.index] = v
            elif c.kind in UNIT_KINDS:
                units[c.layer, n_heads if c.kind == "mlp" else c.index] = v
        grids.append((units, resid))
    finite = torch.cat([g[~g.isnan()] for pair in grids for g in pair])
    lim = float(finite.abs().max()) if len(finite) else 1.0
    size = (4 + 0.45 * (n_heads + 1) + 0.4 * n_pos, 2.2 + 1.6 * len(rows))
    fig, axes = subplots(len(rows), 2, figsize=size, squeeze=False)
    boxes = _circuit_boxes(circuit, n_heads)
    for (ax_units, ax_resid), row, (units, resid) in zip(axes, rows, grids, strict=True):
        _heatmap(ax_units, units, [f"H{h}" for h in range(n_heads)] + ["MLP"], f"{row.method}: heads, MLPs", lim)
        for (layer, x), style in boxes.items():
            ax_units.add_patch(plt.Rectangle((x - 0.5, layer - 0.5), 1, 1, fill=False, lw=2, ec="black", ls=style))
        _heatmap(ax_resid, resid, [str(p) for p in range(n_pos)], "residual stream (row L = input of block L)", lim)
    fig.suptitle("share of the total patching effect (boxed: circuit; dashed: some positions or neurons)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def _circuit_boxes(circuit: Circuit | None, n_heads: int) -> dict[tuple[int, int], str]:
    """(layer, column) -> line style of the circuit's cells: solid for whole units, dashed for parts of them."""
    boxes: dict[tuple[int, int], str] = {}
    for c in circuit.units if circuit is not None else []:
        cell = (c.layer, c.index if c.kind == "head" else n_heads)
        whole = c.kind != "neuron" and c.pos is None
        boxes[cell] = "-" if whole or boxes.get(cell) == "-" else "--"
    return boxes


def _heatmap(ax: Any, values: torch.Tensor, xlabels: list[str], title: str, lim: float) -> None:
    image = ax.imshow(values.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(xlabels)), xlabels, fontsize=7)
    ax.set_yticks(range(values.shape[0]), [f"L{i}" for i in range(values.shape[0])], fontsize=7)
    ax.set_title(title, fontsize=8)
    ax.figure.colorbar(image, ax=ax, shrink=0.8)
