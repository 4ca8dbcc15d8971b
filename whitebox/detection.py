"""Detection benchmark: can a probe or a label-free detector tell a hidden behaviour's inputs apart?

Per residual hook at the answer position, two methods score the task's hidden label (HIDDEN):
a supervised logistic probe (with its shuffled-label control) and a Mahalanobis detector fitted on
trusted clean inputs only (hidden label 0; it never sees a label). Both are refitted on a freshly
initialised model of the same architecture, the baseline for "readable without any training".
Metrics are held-out AUROC and recall at 1% FPR (whitebox.probes.metrics).
"""

from __future__ import annotations

from typing import Any

import torch

from whitebox.capture import Captured, capture
from whitebox.config import LocateConfig, ModelConfig
from whitebox.detectors import evaluate_detector, fit_detectors
from whitebox.locate import fresh_model, hook_labels, probe_data
from whitebox.probes import fit_probes
from whitebox.tasks import get_task

METHODS = ("probe", "detector")


def score_methods(fit_acts: Captured, test_acts: Captured, cfg: LocateConfig, seed: int) -> dict[str, dict[str, dict]]:
    """{method: {hook: metrics}} of a probe and a clean-only detector fitted on fit_acts, scored on test_acts."""
    probes = fit_probes(fit_acts, kind=cfg.probe, C=cfg.C, held_out=test_acts, seed=seed)
    clean = fit_acts.labels == 0
    detectors = fit_detectors({h: a[clean] for h, a in fit_acts.acts.items()}, data_description="clean inputs only")
    return {
        "probe": {h: p.metrics for h, p in probes.items()},
        "detector": {h: evaluate_detector(d, test_acts.acts[h], test_acts.labels) for h, d in detectors.items()},
    }


def detection_rows(
    model: torch.nn.Module, model_cfg: ModelConfig, task_cfg: Any, cfg: LocateConfig, seed: int, behaviour: str
) -> list[dict[str, Any]]:
    """One row per hook x method: AUROC and recall at 1% FPR on `model`, beside its controls on a fresh model."""
    label = get_task(task_cfg.name).HIDDEN
    fit_rows, test_rows = probe_data(task_cfg, cfg, seed)

    def scored(m: torch.nn.Module) -> dict[str, dict[str, dict]]:
        fit_acts, test_acts = (capture(m, rows, cfg.hooks, positions=cfg.position, labels=label, cfg=model_cfg)
                               for rows in (fit_rows, test_rows))
        return score_methods(fit_acts, test_acts, cfg, seed)

    planted, fresh = scored(model), scored(fresh_model(model_cfg, model, task_cfg))
    names = hook_labels(model, list(planted["probe"]))
    return [
        {
            "behaviour": behaviour,
            "hook": hook,
            "name": names[hook],
            "method": method,
            "auroc": m["auroc"],
            "recall_at_1pct_fpr": m["recall_at_1pct_fpr"],
            "control_auroc": m.get("control_auroc"),  # shuffled labels; a detector has no labels to shuffle
            "fresh_auroc": fresh[method][hook]["auroc"],
            "fresh_recall_at_1pct_fpr": fresh[method][hook]["recall_at_1pct_fpr"],
        }
        for method in METHODS
        for hook, m in planted[method].items()
    ]


def best_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary keys detect.<behaviour>.<method>.*: each metric's best over hooks, and the hook of the best AUROC."""
    out: dict[str, Any] = {}
    for behaviour in dict.fromkeys(r["behaviour"] for r in rows):
        for method in METHODS:
            group = [r for r in rows if r["behaviour"] == behaviour and r["method"] == method]
            key = f"detect.{behaviour}.{method}"
            out[f"{key}.auroc_best"] = max(r["auroc"] for r in group)
            out[f"{key}.recall_best"] = max(r["recall_at_1pct_fpr"] for r in group)
            out[f"{key}.fresh_auroc_best"] = max(r["fresh_auroc"] for r in group)
            out[f"{key}.hook_best"] = max(group, key=lambda r: r["auroc"])["hook"]
    return out


def format_detection_table(rows: list[dict[str, Any]]) -> str:
    """The benchmark as one markdown table: behaviour x hook x method, with the control and fresh-model columns."""
    def num(x: float | None) -> str:
        return "–" if x is None else f"{x:.3f}"

    lines = ["| behaviour | hook | method | AUROC | recall@1%FPR | control AUROC | fresh AUROC | fresh recall@1%FPR |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['behaviour']} | {r['name']} | {r['method']} | {num(r['auroc'])} | "
                     f"{num(r['recall_at_1pct_fpr'])} | {num(r['control_auroc'])} | {num(r['fresh_auroc'])} | "
                     f"{num(r['fresh_recall_at_1pct_fpr'])} |")
    return "\n".join(lines)
