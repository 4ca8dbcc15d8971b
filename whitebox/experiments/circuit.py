"""Locate a circuit in a trained model on your own contrast pairs: patch, attribute, select, and check it by ablation.

The model is a pretrained checkpoint (`model.source: pretrained`) or a saved model
(`locate.checkpoint`); the pairs are the task's (e.g. `task: {name: text_pairs, path: pairs.jsonl,
a: [" cat"], b: [" dog"]}`, texts of any lengths). Reads the circuit keys of `locate`
(circuit_pairs, circuit_threshold, circuit_neurons, ablation, ig_steps, attribution_steps); mean
and resample ablation draw on the untriggered side of the pairs when the task samples nothing.
Writes circuit/circuit.json and plots/circuit_scores.png; the summary's locate.* keys are those of
the locate experiment's circuit (patching agreement, circuit size, faithfulness).
"""

from __future__ import annotations

from typing import Any

from whitebox.config import ConfigError, ExperimentConfig
from whitebox.experiments.probe import check_subject, subject
from whitebox.protocol.locate import locate_and_save_circuit
from whitebox.runtime.context import RunContext
from whitebox.runtime.experiment import register_experiment
from whitebox.runtime.rundir import step_keys
from whitebox.tasks import get_task, require

PROBE_KEYS = ("hooks", "position", "probe", "probes", "C", "n_fit", "n_test")


def run(ctx: RunContext) -> dict[str, Any]:
    cfg, task = ctx.cfg, get_task(ctx.cfg.task)
    model, model_cfg = subject(cfg, ctx.device)
    found = locate_and_save_circuit(ctx, model.eval(), model_cfg, task)
    ctx.tracker.log("locate", 0, {k: v for k, v in found.items() if isinstance(v, (int, float))})
    return step_keys("locate", found)


def check(cfg: ExperimentConfig) -> None:
    """A trained model from exactly one place, and a task with contrast pairs."""
    check_subject(cfg, "circuit")
    try:
        require(get_task(cfg.task), "contrast_pairs", "experiment 'circuit'")
    except ConfigError as err:
        raise ConfigError(f"task.name: {err} (for your own texts use task: {{name: text_pairs, path: ..., a: [...], "
                          "b: [...]}})") from None


CIRCUIT = register_experiment("circuit", run, sections=("model", "task", "locate"), check=check,
                              unread={f"locate.{key}": "it locates a circuit only; to fit probes use experiment: probe"
                                      for key in PROBE_KEYS})
