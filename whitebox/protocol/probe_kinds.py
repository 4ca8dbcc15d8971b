"""Every probe kind per hook (`locate.probes`): each beside its controls, saved, tabled and plotted with locate.probe.

The kinds that fit from binary labels are fitted on the activations already captured for
locate.probe (one capture of the model and one of its randomly initialised copy serve them all),
each with the shuffled-label control and the same kind on the fresh copy. A kind that fits from
contrast pairs of activations (CCS) is fitted on the task's contrast pairs when it has them: both
inputs of each pair read at the answer position, the pair's order drawn at random so that the
seeded label (1: the triggered input comes first) orients and scores it; its control is CCS's own
(a random direction), beside the fresh copy. A kind the task cannot feed (the multinomial read-out
needs class labels; CCS without pairs, or at another position than `last`) is listed as skipped
with what it needs, as the registry states it; asking for it by name is a config error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from whitebox.capture import Captured, capture
from whitebox.config import ConfigError, LocateConfig, ModelConfig
from whitebox.inputs import prompt_format
from whitebox.probes import PROBE_KINDS, Probe, ProbeKind, fit_ccs_probes, fit_probes
from whitebox.runtime.figures import save_figure, subplots
from whitebox.runtime.rundir import RunDir
from whitebox.tasks import ContrastPairs, Task, has
from whitebox.tasks.pairs import tokenized_pairs

METRICS = ("auroc", "control_auroc", "selectivity", "recall_at_1pct_fpr")


@dataclass(frozen=True)
class Kinds:
    """What locate.probes asks for on this task: kinds fitted from labels, from contrast pairs, and those skipped."""

    labels: list[str]  # besides locate.probe
    pairs: list[str]
    skipped: dict[str, str]  # kind -> why


def requested_kinds(cfg: LocateConfig, task: Task) -> Kinds:
    """The kinds of cfg.probes (None: none) this task can feed; a kind asked for by name that it cannot is refused."""
    if cfg.probes is None:
        return Kinds([], [], {})
    names = list(PROBE_KINDS) if cfg.probes == "all" else list(cfg.probes)
    labels = [k for k in names if PROBE_KINDS[k].fit is not None and k != cfg.probe]
    pairs, skipped = [], {}
    for k in [k for k in names if PROBE_KINDS[k].fit is None]:
        why = _cannot_fit(PROBE_KINDS[k], cfg, task)
        if why is None:
            pairs.append(k)
            continue
        if cfg.probes != "all":
            raise ConfigError(f"locate.probes: probe kind {k!r} {why}; remove it (or use all to list it as skipped)")
        skipped[k] = why
    return Kinds(labels, pairs, skipped)


def _cannot_fit(kind: ProbeKind, cfg: LocateConfig, task: Task) -> str | None:
    """Why a kind without a per-hook label fit cannot be fitted on this task (None: it can, from the task's pairs)."""
    if kind.fit_pairs is None:
        return f"needs {kind.needs}; task {task.name!r} gives binary labels"
    if not has(task, "contrast_pairs"):
        return f"needs {kind.needs}; task {task.name!r} has no contrast pairs"
    if cfg.position != "last":
        return f"reads contrast pairs at their answer position, but locate.position is {cfg.position!r}"
    return None


def fit_pair_kinds(
    kinds: list[str],
    models: tuple[torch.nn.Module, torch.nn.Module],
    model_cfg: ModelConfig,
    task: Task,
    cfg: LocateConfig,
    seed: int,
    out_dir: RunDir,
) -> dict[str, dict[str, dict[str, float]]]:
    """{kind: {hook: kind_row}}: each kind fitted on the task's pairs for (model, fresh copy), saved as fit_kinds does."""
    if not kinds:
        return {}
    pairs = tokenized_pairs(task, (cfg.n_fit + cfg.n_test) // 2, seed, models[0])
    n_fit = min(cfg.n_fit // 2, len(pairs) // 2)
    if n_fit < 2 or len(pairs) - n_fit < 2:
        raise ConfigError(f"locate.probes: {', '.join(kinds)} need at least 4 contrast pairs; task {task.name!r} gave "
                          f"{len(pairs)}")
    first = (torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed)) % 2).bool()  # triggered first
    description = f"{task.name} task ({task.config.model_dump(mode='json')}) contrast pairs, seed {seed}"
    prompt = prompt_format(models[0], task.chat_template) if task.uses_model_tokenizer else None
    sides = [_pair_sides(m, pairs, first, cfg, model_cfg) for m in models]  # per model: (x_pos, x_neg, identity)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for kind in kinds:
        fitted = []
        for (pos, neg, identity, locations), control in zip(sides, (True, False), strict=True):
            probes = fit_ccs_probes(
                {h: a[:n_fit] for h, a in pos.items()}, {h: a[:n_fit] for h, a in neg.items()}, first[:n_fit],
                held_out=({h: a[n_fit:] for h, a in pos.items()}, {h: a[n_fit:] for h, a in neg.items()},
                          first[n_fit:]),
                control=control, seed=seed, model=identity, data_description=description, kind=kind)
            for hook, probe in probes.items():
                probe.hf_location = locations.get(hook)
                probe.prompt_format = prompt  # texts tokenised as they are (a text task's pairs), or None: token ids
            fitted.append(probes)
        for hook, probe in fitted[0].items():
            probe.save(out_dir.probe(hook, kind))
        out[kind] = {hook: kind_row(probe, fitted[1][hook]) for hook, probe in fitted[0].items()}
    return out


def _pair_sides(
    model: torch.nn.Module, pairs: ContrastPairs, first: torch.Tensor, cfg: LocateConfig, model_cfg: ModelConfig
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any] | None, dict[str, Any]]:
    """(x_pos, x_neg {hook: [n, d]}, model identity, hf locations): each pair's inputs at the answer, in `first`'s order."""
    triggered, untriggered = (capture(model, tokens, cfg.hooks, attention_mask=mask, cfg=model_cfg)
                              for tokens, mask in (_right_padded(pairs.triggered, pairs.triggered_mask),
                                                   _right_padded(pairs.untriggered, pairs.untriggered_mask)))
    keep = first[:, None]
    pos = {h: torch.where(keep, a, untriggered.acts[h]) for h, a in triggered.acts.items()}
    neg = {h: torch.where(keep, untriggered.acts[h], a) for h, a in triggered.acts.items()}
    return pos, neg, triggered.model, triggered.locations or {}


def kind_row(probe: Probe, fresh: Probe) -> dict[str, float]:
    """One kind at one hook: held-out AUROC, its shuffled-label control, selectivity, recall, and the fresh copy's AUROC."""
    return {**{k: probe.metrics[k] for k in METRICS}, "fresh_auroc": fresh.metrics["auroc"]}


def fit_kinds(
    kinds: list[str],
    acts: tuple[Captured, Captured],
    fresh_acts: tuple[Captured, Captured],
    cfg: LocateConfig,
    seed: int,
    description: str,
    out_dir: RunDir,
) -> dict[str, dict[str, dict[str, float]]]:
    """{kind: {hook: kind_row}}: each kind fitted on (fit, test) activations, saved under probes/<kind>/<hook>/."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for kind in kinds:
        probes = fit_probes(acts[0], kind=kind, C=cfg.C, held_out=acts[1], seed=seed, data_description=description)
        fresh = fit_probes(fresh_acts[0], kind=kind, C=cfg.C, held_out=fresh_acts[1], seed=seed, control=False)
        for hook, probe in probes.items():
            probe.save(out_dir.probe(hook, kind))
        out[kind] = {hook: kind_row(probe, fresh[hook]) for hook, probe in probes.items()}
    return out


def kinds_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary metrics per fitted kind: its best held-out AUROC, that hook, its selectivity there, the fresh copy's best."""
    metrics: dict[str, Any] = {}
    for kind in [k for k, v in rows[0]["kinds"].items() if "skipped" not in v]:
        best = max(rows, key=lambda r: r["kinds"][kind]["auroc"])
        metrics |= {f"probe_{kind}_auroc_best": best["kinds"][kind]["auroc"], f"probe_{kind}_hook_best": best["hook"],
                    f"probe_{kind}_selectivity_best_hook": best["kinds"][kind]["selectivity"],
                    f"fresh_probe_{kind}_auroc_best": max(r["kinds"][kind]["fresh_auroc"] for r in rows)}
    metrics["probe_kinds_skipped"] = ",".join(k for k, v in rows[0]["kinds"].items() if "skipped" in v)
    return metrics


def format_kinds_table(rows: list[dict[str, Any]]) -> str:
    """Every kind per hook with its controls (the detector is in the main table), then the kinds skipped and why."""
    head = f"{'kind':<10} {'hook':<22} {'name':<8} {'AUROC':>6} {'control':>7} {'select.':>7} {'rec@1%':>6} {'fresh':>6}"
    lines, skipped = [head, "-" * len(head)], []
    for kind, first in rows[0]["kinds"].items():
        if "skipped" in first:
            skipped.append(f"skipped {kind}: {first['skipped']}")
            continue
        for r in rows:
            k = r["kinds"][kind]
            lines.append(f"{kind:<10} {r['hook']:<22} {r['name']:<8} {k['auroc']:>6.3f} {k['control_auroc']:>7.3f} "
                         f"{k['selectivity']:>7.3f} {k['recall_at_1pct_fpr']:>6.3f} {k['fresh_auroc']:>6.3f}")
    return "\n".join(lines + skipped)


def _right_padded(tokens: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Left-padded pairs [batch pos] as capture reads inputs: each row's real tokens first, its padding after them."""
    if mask is None:
        return tokens, None
    shift = (torch.arange(tokens.shape[1]) + (mask == 0).sum(1, keepdim=True)) % tokens.shape[1]  # batch pos
    return tokens.gather(1, shift), mask.gather(1, shift)


def plot_probe_kinds(rows: list[dict[str, Any]], out: str | Path, title: str) -> Path:
    """One panel per fitted kind: AUROC by hook for the probe, its shuffled-label control, the fresh copy and the detector."""
    kinds = [k for k, v in rows[0]["kinds"].items() if "skipped" not in v]
    x = range(len(rows))
    fig, axes = subplots(1, len(kinds), figsize=(max(4.0, 0.7 * len(rows) + 2) * len(kinds), 3.6), squeeze=False,
                         constrained_layout=True)
    for ax, kind in zip(axes[0], kinds, strict=True):
        for key, label, style in (("auroc", "probe", "o-"), ("control_auroc", "shuffled labels", "x--"),
                                  ("fresh_auroc", "fresh model", "s:")):
            ax.plot(x, [r["kinds"][kind][key] for r in rows], style, label=label)
        ax.plot(x, [r["detector_auroc"] for r in rows], "^-.", label="Mahalanobis (no labels)")
        ax.axhline(0.5, color="grey", lw=0.8)
        ax.set_xticks(list(x), [r["name"] for r in rows])
        ax.set(ylim=(0.3, 1.02), xlabel="residual stream hook", ylabel="held-out AUROC", title=kind)
        ax.grid(alpha=0.3)
    axes[0][0].legend(frameon=False, fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, out, dpi=120)
