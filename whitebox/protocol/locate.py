"""Protocol step 2: where does the hidden behaviour live? Probes and a detector per residual hook.

Probes for the task's hidden label (the trigger) are fitted on every residual-stream hook at the
answer position, with two controls beside each: the same probe on shuffled labels (does it only
memorise?) and on a freshly initialised model of the same architecture (is the label readable
without any training?). A Mahalanobis detector fitted on clean inputs only scores the same hooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from whitebox.attribution import Circuit, locate_circuit, plot_component_scores
from whitebox.capture import capture, residual_hooks
from whitebox.config import LocateConfig, ModelConfig
from whitebox.models import build_model
from whitebox.probes import (
    MahalanobisDetector,
    Probe,
    evaluate_detector,
    fit_detectors,
    fit_probes,
    load_detector,
    load_probe,
)
from whitebox.protocol.plant import Planted
from whitebox.protocol.probe_kinds import (
    fit_kinds,
    fit_pair_kinds,
    format_kinds_table,
    kind_row,
    kinds_metrics,
    plot_probe_kinds,
    requested_kinds,
)
from whitebox.runtime.artifacts import ProbeError, write_json
from whitebox.runtime.context import RunContext
from whitebox.runtime.figures import save_figure, subplots
from whitebox.runtime.lanes import seeded
from whitebox.runtime.records import read_step_summary
from whitebox.runtime.rundir import FRESH_MODEL_SEED, RunDir, step_keys
from whitebox.tasks import Task, has, reading


@dataclass
class Located:
    """What the locate step found, on disk in the run directory: probes and detectors per hook, the circuit."""

    dir: RunDir
    summary: dict[str, Any]  # the step's summary keys, locate.<measure>

    def probe(self, hook: str) -> Probe:
        return _reads(load_probe(self.dir.probe(hook)), hook, self.dir.probe(hook) / "probe.json")

    def detector(self, hook: str) -> MahalanobisDetector:
        return _reads(load_detector(self.dir.detector(hook)), hook, self.dir.detector(hook) / "detector.json")

    @property
    def circuit(self) -> Circuit | None:
        """The located circuit; None when the task has no contrast pairs to locate one with."""
        return Circuit.load(self.dir.circuit) if self.dir.circuit.is_file() else None


def _reads(artifact: Any, hook: str, path: Path) -> Any:
    """The artifact saved for `hook`, refused when its file names another hook (the measures index by it)."""
    if artifact.hook != hook:
        raise ProbeError(f"{path}: field 'hook' is {artifact.hook!r} but the file is the one for {hook!r}; fit the probes "
                         "again")
    return artifact


def probe_data(task: Task, cfg: LocateConfig, seed: int) -> tuple[Dataset, Dataset]:
    """Fit and test sets, half of them carrying the hidden label, from streams the model never trained on."""
    return task.probe_split(cfg.n_fit, cfg.n_test, seed)


def hook_labels(model: torch.nn.Module, hooks: list[str]) -> dict[str, str]:
    """Short names for residual hooks in forward order (L0.pre, L0.mid, L0.post, ...); others keep their name."""
    resid = residual_hooks(model)
    names = ["L0.pre"] + [f"L{i // 2}.{'mid' if i % 2 == 0 else 'post'}" for i in range(len(resid) - 1)]
    short = dict(zip(resid, names))
    return {h: short.get(h, h) for h in hooks}


def locate_probes(
    model: torch.nn.Module,
    model_cfg: ModelConfig,
    task: Task,
    cfg: LocateConfig,
    seed: int,
    out_dir: RunDir,
) -> tuple[dict[str, Probe], dict[str, Any], list[dict[str, Any]]]:
    """Fit, save and score probes and detectors per hook; return probes, summary metrics and table rows."""
    label = task.hidden_label
    fit_rows, test_rows = probe_data(task, cfg, seed)

    def acts(m: torch.nn.Module, rows: Dataset):
        with reading(task):
            return capture(m, rows, cfg.hooks, positions=cfg.position, labels=label, cfg=model_cfg,
                           chat_template=task.chat_template)

    fit_acts, test_acts = acts(model, fit_rows), acts(model, test_rows)
    description = f"{task.name} task ({task.config.model_dump(mode='json')}), label {label!r}, seed {seed}"
    probes = fit_probes(fit_acts, kind=cfg.probe, C=cfg.C, held_out=test_acts, seed=seed,
                        data_description=description)
    for hook, probe in probes.items():
        probe.save(out_dir.probe(hook))

    fresh = fresh_model(model_cfg, model, task)
    fresh_acts = acts(fresh, fit_rows), acts(fresh, test_rows)
    fresh_probes = fit_probes(fresh_acts[0], kind=cfg.probe, C=cfg.C, held_out=fresh_acts[1], seed=seed, control=False)

    clean = fit_acts.labels == 0
    detectors = fit_detectors({h: a[clean] for h, a in fit_acts.acts.items()}, position=fit_acts.positions,
                              model=fit_acts.model, locations=fit_acts.locations, prompt_format=fit_acts.prompt_format,
                              data_description=f"clean inputs only: {description}")
    detected = {h: evaluate_detector(d, test_acts.acts[h], test_acts.labels) for h, d in detectors.items()}
    for hook, detector in detectors.items():
        detector.save(out_dir.detector(hook))

    names = hook_labels(model, list(probes))
    rows = [
        {
            "hook": hook,
            "name": names[hook],
            "auroc": probe.metrics["auroc"],
            "control_auroc": probe.metrics["control_auroc"],
            "selectivity": probe.metrics["selectivity"],
            "recall_at_1pct_fpr": probe.metrics["recall_at_1pct_fpr"],
            "fresh_auroc": fresh_probes[hook].metrics["auroc"],
            "detector_auroc": detected[hook]["auroc"],
        }
        for hook, probe in probes.items()
    ]
    kinds = requested_kinds(cfg, task)
    if cfg.probes is not None:
        fitted = fit_kinds(kinds.labels, (fit_acts, test_acts), fresh_acts, cfg, seed, description, out_dir)
        fitted |= fit_pair_kinds(kinds.pairs, (model, fresh), model_cfg, task, cfg, seed, out_dir)
        for row, probe in zip(rows, probes.values(), strict=True):
            row["kinds"] = {cfg.probe: kind_row(probe, fresh_probes[row["hook"]])}
            row["kinds"] |= {kind: by_hook[row["hook"]] for kind, by_hook in fitted.items()}
            row["kinds"] |= {kind: {"skipped": why} for kind, why in kinds.skipped.items()}
    best = max(rows, key=lambda r: r["auroc"])
    best_detector = max(rows, key=lambda r: r["detector_auroc"])
    metrics = {
        "probe_auroc_best": best["auroc"],
        "probe_hook_best": best["hook"],
        "probe_control_auroc_best_hook": best["control_auroc"],
        "probe_selectivity_best_hook": best["selectivity"],
        "probe_recall_at_1pct_fpr_best_hook": best["recall_at_1pct_fpr"],
        "fresh_probe_auroc_best": max(r["fresh_auroc"] for r in rows),
        "detector_auroc_best": best_detector["detector_auroc"],
        "detector_hook_best": best_detector["hook"],
    }
    if cfg.probes is not None:
        metrics |= kinds_metrics(rows)
    return probes, metrics, rows


def format_probe_table(rows: list[dict[str, Any]]) -> str:
    """The per-hook table printed after locating: probe, its controls, and the detector."""
    head = f"{'hook':<22} {'name':<8} {'AUROC':>6} {'control':>7} {'select.':>7} {'rec@1%':>6} {'fresh':>6} {'detector':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['hook']:<22} {r['name']:<8} {r['auroc']:>6.3f} {r['control_auroc']:>7.3f} {r['selectivity']:>7.3f} "
            f"{r['recall_at_1pct_fpr']:>6.3f} {r['fresh_auroc']:>6.3f} {r['detector_auroc']:>8.3f}"
        )
    return "\n".join(lines)


def report_probes(rows: list[dict[str, Any]], out: RunDir, task: Task, cfg: LocateConfig) -> None:
    """Print the per-hook table (and every kind's, with locate.probes), write probes/table.json and the plots."""
    tqdm.write(f"probes for {task.hidden_label!r} at position {cfg.position!r} "
               f"(held-out AUROC; control: shuffled labels; fresh: untrained model)\n{format_probe_table(rows)}")
    write_json(out.probe_table, rows)
    title = f"{task.name}: where is {task.hidden_label!r} linearly readable?"
    plot_probe_auroc(rows, out.plot("probe_auroc"), title)
    if "kinds" in rows[0]:
        tqdm.write(f"every probe kind (locate.probes):\n{format_kinds_table(rows)}")
        plot_probe_kinds(rows, out.plot("probe_kinds"), title)


def plot_probe_auroc(rows: list[dict[str, Any]], out: str | Path, title: str) -> Path:
    """AUROC by residual hook (forward order) for the probe, its shuffled-label control, a fresh model and the detector."""
    x = range(len(rows))
    fig, ax = subplots(figsize=(max(5.0, 0.9 * len(rows) + 2), 3.6), constrained_layout=True)
    for key, label, style in (("auroc", "probe (planted model)", "o-"), ("control_auroc", "probe, shuffled labels", "x--"),
                              ("fresh_auroc", "probe, fresh model", "s:"), ("detector_auroc", "Mahalanobis (no labels)", "^-.")):
        ax.plot(x, [r[key] for r in rows], style, label=label)
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_xticks(list(x), [r["name"] for r in rows])
    ax.set(ylim=(0.3, 1.02), xlabel="residual stream hook (forward order)", ylabel="held-out AUROC", title=title)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    return save_figure(fig, out, dpi=120)


def fresh_model(model_cfg: ModelConfig, like: torch.nn.Module, task: Task) -> torch.nn.Module:
    """A randomly initialised model of the same architecture, seeded apart from the planted one."""
    vocab = None if task.uses_model_tokenizer else task.vocabulary()
    with seeded(FRESH_MODEL_SEED):
        fresh = build_model(model_cfg, vocab, next(like.parameters()).device, pretrained_weights=False)
    return fresh.eval()


def locate(run: RunContext, planted: Planted) -> Located:
    """The whole locate step of a run: probes, detector and (when the task has contrast pairs) the circuit."""
    cfg, out, model, task = run.cfg, run.dir, planted.model, planted.task
    if out.located.is_file():  # located before an interruption: the artifacts are on disk, the metrics here
        return Located(out, read_step_summary(out.located, "locate"))
    run.tracker.rewind("locate", -1)  # a record of an interrupted attempt is written again below
    _, metrics, rows = locate_probes(model, cfg.model, task, cfg.locate, cfg.run.seed, out)
    report_probes(rows, out, task, cfg.locate)
    if has(task, "contrast_pairs"):
        metrics.update(locate_and_save_circuit(run, planted.model, planted.model_cfg, planted.task))
    else:
        tqdm.write(f"circuit: not located (task {task.name!r} has no contrast pairs)")
    run.tracker.log("locate", 0, {k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    run.tracker.close_stage("locate")
    summary = step_keys("locate", metrics)
    write_json(out.located, summary)
    return Located(out, summary)


def locate_and_save_circuit(run: RunContext, model: torch.nn.Module, model_cfg: ModelConfig, task: Task) -> dict[str, float]:
    """Patch, attribute, select and ablate; save circuit/circuit.json and its score plot; the circuit metrics."""
    loc = run.cfg.locate
    circuit, found = locate_circuit(
        model, model_cfg, task, n_pairs=loc.circuit_pairs, seed=run.cfg.run.seed,
        threshold=loc.circuit_threshold, neurons=loc.circuit_neurons, ablation=loc.ablation, ig_steps=loc.ig_steps,
        attribution_steps=loc.attribution_steps,
    )
    circuit.save(run.dir.circuit)
    plot_component_scores(circuit, run.dir.plot("circuit_scores"))
    tqdm.write(
        f"circuit: {int(found['circuit_size'])} components; attribution ({loc.attribution_steps} gradient points) vs "
        f"activation patching Spearman "
        f"{found['patching_spearman']:.3f}; ablating it: ASR {found['ablation_asr']:.3f}, clean acc "
        f"{found['ablation_clean_acc']:.3f}; ablating the rest: ASR {found['complement_ablation_asr']:.3f}"
    )
    return found
