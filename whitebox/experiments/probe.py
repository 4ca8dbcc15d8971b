"""Probe a trained model on your own data: a probe and a clean-only detector per hook, beside their controls.

The model is a pretrained checkpoint (`model.source: pretrained`) or a saved model
(`locate.checkpoint`: a whitebox run's models/<name> or a save_pretrained folder); the data is
the task's probe split (e.g. `task: {name: text, path: data.jsonl}`). Controls per hook: the same
probe on shuffled labels, and on a randomly initialised copy of the architecture. Writes
probes/<hook>/, detectors/<hook>/, probes/table.json and plots/probe_auroc.png; with `locate.probes`
(a list of kinds, or all) every kind beside locate.probe under probes/<kind>/<hook>/, its columns in
the table and plots/probe_kinds.png (whitebox.protocol.probe_kinds).
"""

from __future__ import annotations

from typing import Any

import torch

from whitebox.config import ConfigError, ExperimentConfig, ModelConfig
from whitebox.models import build_model, load_model
from whitebox.protocol.locate import locate_probes, report_probes
from whitebox.protocol.probe_kinds import requested_kinds
from whitebox.runtime.context import RunContext
from whitebox.runtime.experiment import register_experiment
from whitebox.runtime.rundir import step_keys
from whitebox.tasks import get_task


def subject(cfg: ExperimentConfig, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, ModelConfig]:
    """The model to probe: locate.checkpoint when given, else the pretrained checkpoint of the model section."""
    if cfg.locate.checkpoint is not None:
        return load_model(cfg.locate.checkpoint, device)
    return build_model(cfg.model, None, device), cfg.model


def run(ctx: RunContext) -> dict[str, Any]:
    cfg, task = ctx.cfg, get_task(ctx.cfg.task)
    model, model_cfg = subject(cfg, ctx.device)
    _, metrics, rows = locate_probes(model.eval(), model_cfg, task, cfg.locate, cfg.run.seed, ctx.dir)
    report_probes(rows, ctx.dir, task, cfg.locate)
    ctx.tracker.log("locate", 0, {k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    return step_keys("locate", metrics)


def check_subject(cfg: ExperimentConfig, experiment: str) -> None:
    """A trained model from exactly one place: locate.checkpoint or a pretrained model section."""
    if cfg.locate.checkpoint is not None and "model" in cfg.model_fields_set:
        raise ConfigError("model: the model comes from locate.checkpoint; remove the model section (or the checkpoint)")
    if cfg.locate.checkpoint is None and cfg.model.source != "pretrained":
        raise ConfigError(f"model.source: experiment {experiment!r} needs a trained model: set model.source: pretrained "
                          "with model.name_or_path, or locate.checkpoint to a saved model")


def check(cfg: ExperimentConfig) -> None:
    """A trained model to probe, from exactly one place, and a task with a hidden label."""
    check_subject(cfg, "probe")
    task = get_task(cfg.task)
    if task.hidden_label is None:
        raise ConfigError(f"task.name: task {cfg.task.name!r} has no hidden label for probes to look for")
    requested_kinds(cfg.locate, task)


CIRCUIT_KEYS = ("circuit_pairs", "circuit_threshold", "circuit_neurons", "ablation", "ig_steps", "attribution_steps")
PROBE = register_experiment("probe", run, sections=("model", "task", "training", "locate"), check=check,
                            unread={f"locate.{key}": "it fits probes and detectors only; to locate a circuit on the "
                                    "task's contrast pairs use experiment: circuit" for key in CIRCUIT_KEYS})
