"""Every probe kind per hook (`locate.probes`): each beside its controls, saved, tabled and plotted with locate.probe.

The kinds are fitted on the activations already captured for locate.probe (one capture of the
model and one of its randomly initialised copy serve every kind), each with the shuffled-label
control and the same kind on the fresh copy. A registered kind that does not fit per hook from
binary labels (CCS from contrast pairs, the multinomial read-out from class labels) is listed as
skipped with what it needs, as the registry states it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from whitebox.capture import Captured
from whitebox.config import LocateConfig
from whitebox.probes import PROBE_KINDS, Probe, fit_probes
from whitebox.runtime.figures import save_figure, subplots
from whitebox.runtime.rundir import RunDir

METRICS = ("auroc", "control_auroc", "selectivity", "recall_at_1pct_fpr")


def requested_kinds(cfg: LocateConfig, task_name: str) -> tuple[list[str], dict[str, str]]:
    """(kinds fitted besides locate.probe, {kind skipped: why}) for cfg.probes (None: none)."""
    if cfg.probes is None:
        return [], {}
    names = list(PROBE_KINDS) if cfg.probes == "all" else list(cfg.probes)
    fitted = [k for k in names if PROBE_KINDS[k].fit is not None and k != cfg.probe]
    skipped = {k: f"needs {PROBE_KINDS[k].needs}; task {task_name!r} gives binary labels"
               for k in names if PROBE_KINDS[k].fit is None}
    return fitted, skipped


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
