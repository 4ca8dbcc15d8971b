"""Protocol step 3: train the planted model to behave, with one regime per copy, on equal budgets.

Each cell (regime x condition) starts from the planted weights, trains on an independent seeded
stream of treatment data until its forward-pass budget is spent, and is measured at the same
budget points as every other cell. A cell lives in treat/<regime>-<condition>/ under the run
directory: checkpoints while it runs, model/ and result.json when it is done, so an interrupted
experiment resumes inside the running cell and never redoes a finished one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from whitebox.attribution import GradientShare, MeasuredUpdater
from whitebox.attribution.params import masked_weights, parameter_masks
from whitebox.attribution.transplant import donor_activations
from whitebox.capture import residual_hooks
from whitebox.config import Condition, ModelConfig, TrainingConfig, TreatConfig
from whitebox.models import load_weights, save_model
from whitebox.probes import Probe
from whitebox.probes.fits import check_reads
from whitebox.protocol.locate import Located, fresh_model, probe_data
from whitebox.protocol.measures import Measures
from whitebox.protocol.plant import Planted, plant
from whitebox.report.plots import plot_treatment, read_metrics
from whitebox.runtime.artifacts import write_json
from whitebox.runtime.context import RunContext
from whitebox.runtime.lanes import seeded
from whitebox.runtime.records import read_numbers
from whitebox.runtime.rundir import (
    MEASURE_PAIRS_OFFSET,
    StageDir,
    cell_name,
    seed_stream,
    treat_keys,
    treat_row,
    treat_stage,
)
from whitebox.tasks import Rater, Task, has, require
from whitebox.training import REGIMES, build_regime, train
from whitebox.training.decay import BudgetDecay
from whitebox.training.loop import StageLog
from whitebox.training.probe_penalty import ProbeScore


def treatment_data(task: Task, condition: Condition, n: int, trigger_rate: float, seed: int) -> dict[str, torch.Tensor]:
    """Inputs with honest targets; triggered at `trigger_rate` when the trigger is present, never when absent."""
    require(task, "sample", "treatment data")
    rate = trigger_rate if condition == "present" else 0.0
    rows = task.sample(n, rate, seed=seed_stream("treatment", seed))[:]
    return {"tokens": rows["tokens"], "target": rows["honest_target"], "honest_target": rows["honest_target"]}


def fine_tuning(base: TrainingConfig, *, steps: int, batch_size: int, lr: float, eval_every: int) -> TrainingConfig:
    """Loop settings for training an already trained model further: constant lr, no warmup, one checkpoint kept.

    Checkpoints come at evaluations and at the end (the loop adds those), not on a step schedule.
    """
    return base.model_copy(update={
        "steps": steps, "batch_size": batch_size, "lr": lr, "warmup_steps": 0, "schedule": "constant",
        "eval_every": eval_every, "checkpoint_every": 10**12, "keep_checkpoints": 1,
    })


def treat_cell(
    model: torch.nn.Module,
    model_cfg: ModelConfig,
    task: Task,
    cfg: TreatConfig,
    training: TrainingConfig,
    regime: str,
    condition: Condition,
    *,
    seed: int,
    cell: StageDir,
    start: str | Path,
    evaluate: Callable[[torch.nn.Module], dict[str, float]],
    log: StageLog,
    probe: tuple[ProbeScore, str] | None = None,
    circuit_units: list | None = None,
    rater: Rater | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Treat `model` (loaded with the weights saved at `start` here) in one cell; return its final measures.

    With `circuit_units`, gradient regimes log the circuit's share of the gradient norm every
    logged step (train/circuit.grad_share). `rater` scores the answers of reward-fed regimes
    (default: the task's own rater). A finished cell returns its saved result and leaves `model`
    with its treated weights.
    """
    if cell.result.is_file():
        load_weights(model, model_cfg, cell.model)
        return read_numbers(cell.result, field="final")["final"]
    load_weights(model, model_cfg, start)
    # the budget, not steps or eval_every, ends and measures a treatment
    loop_cfg = fine_tuning(training, steps=10**12, batch_size=cfg.batch_size, lr=cfg.lr_of(regime), eval_every=10**12)
    if cfg.decay is not None:  # one decay for every regime (BudgetDecay), none from the optimizers
        loop_cfg = loop_cfg.model_copy(update={"weight_decay": 0.0})
    data = {k: v.to(device) for k, v in treatment_data(task, condition, cfg.n_train, cfg.trigger_rate, seed).items()}
    if rater is None and has(task, "rater"):
        rater = task.rater()
    with seeded(seed):
        updater, loss_fn = build_regime(regime, cfg, model, loop_cfg, seed=seed, device=device, rater=rater, probe=probe)
    if cfg.decay:
        updater = BudgetDecay(updater, model, cfg.decay, cfg.budget)
    if circuit_units and REGIMES[regime].sees_gradients:
        updater = MeasuredUpdater(updater, GradientShare(model, circuit_units))
    final = train(
        model, updater, loss_fn, data, loop_cfg, seed=seed, evaluate=evaluate, checkpoint_dir=cell.checkpoints,
        log=log, desc=cell_name(regime, condition), budget=cfg.budget,
        lr_key=f"treat.regime_lr.{regime}" if regime in cfg.regime_lr else "treat.lr",
        eval_every_budget=math.ceil(cfg.budget / cfg.eval_points),
    )
    save_model(model, model_cfg, cell.model, extra={"regime": regime, "condition": condition})
    write_json(cell.result, {"regime": regime, "condition": condition, "budget": cfg.budget, "final": final})
    return final


@dataclass
class Treated:
    """The treated copies of a planted model: each cell's saved weights by row (sft.present), and the summary."""

    models: dict[str, Path]  # treat_row(regime, condition) -> the cell's saved model
    summary: dict[str, Any] = field(default_factory=dict)
    yardsticks: dict[str, Path] = field(default_factory=dict)  # aware and <regime>_aware.<condition> (treat_aware)


def frozen_probe(run: RunContext, model: torch.nn.Module, located: Located) -> tuple[Probe, str]:
    """The located probe at treat.probe_hook (default: the last residual hook), checked against `model`; and that hook."""
    hook = run.cfg.treat.probe_hook or residual_hooks(model)[-1]
    frozen = located.probe(hook)
    check_reads(frozen, model, f"{located.dir.probe(hook)}/probe.json")
    return frozen, hook


@dataclass
class Treatment:
    """What every cell of one treatment shares: the frozen probe and its hook, the measures and the controls' summary."""

    frozen: Probe
    hook: str
    measures: Measures
    circuit_units: list | None
    summary: dict[str, Any]  # treat.start.* and treat.fresh.*


def prepare_treatment(run: RunContext, planted: Planted, located: Located) -> Treatment:
    """The frozen probe, the measures, and the untreated (start) and fresh models measured with them."""
    cfg, model, task = run.cfg, planted.model, planted.task
    frozen, hook = frozen_probe(run, model, located)
    circuit = located.circuit
    if circuit is not None:
        circuit.check_model(model, cfg.model)  # before any cell trains: a circuit of another model stops the run here
    fit_rows, test_rows = probe_data(task, cfg.locate, cfg.run.seed)
    pairs = None if circuit is None else task.contrast_pairs(cfg.locate.circuit_pairs, cfg.run.seed + MEASURE_PAIRS_OFFSET)
    reference = None if circuit is None else masked_weights(model, parameter_masks(model, circuit.units))
    donor = None if circuit is None else donor_activations(model, circuit.units, pairs.to(run.device))
    measures = Measures(task, cfg.model, cfg.locate, task.eval_set(cfg.run.seed), fit_rows, test_rows, frozen,
                        located.detector(hook), circuit, pairs, cfg.run.seed, reference, donor)
    kind = task.variant
    with run.timed("treat.measure_controls"):
        out = treat_keys("start", kind, measures(model))
        out.update(treat_keys("fresh", kind, measures(fresh_model(cfg.model, model, task))))
    return Treatment(frozen, hook, measures, circuit.units if circuit is not None else None, out)


def treat_one(run: RunContext, planted: Planted, treatment: Treatment, regime: str, condition: Condition,
              model: torch.nn.Module) -> dict[str, float]:
    """One cell, trained on `model` (loaded with the planted weights first); its final measures (with grad_share)."""
    stage = treat_stage(regime, condition)
    with run.timed(f"treat.{cell_name(regime, condition)}"):
        final = treat_cell(
            model, run.cfg.model, planted.task, run.cfg.treat, run.cfg.training, regime, condition, seed=run.cfg.run.seed,
            cell=run.dir.stage(stage), start=planted.path, evaluate=treatment.measures, log=run.tracker.stage(stage),
            probe=(treatment.frozen.probability, treatment.hook), circuit_units=treatment.circuit_units, device=run.device,
        )
    shares = [r["train/circuit.grad_share"] for r in read_metrics(run.tracker.metrics_path, stage)
              if math.isfinite(r.get("train/circuit.grad_share", math.nan))]  # NaN: a step with no gradient
    if shares:
        final = {**final, "grad_share": sum(shares) / len(shares)}
    tqdm.write(f"{cell_name(regime, condition)}: " + ", ".join(f"{k} {v:.3f}" for k, v in final.items()))
    return final


def cells(cfg: TreatConfig) -> list[tuple[str, Condition]]:
    """The (regime, condition) cells of a treatment, in the order they are run and reported."""
    return [(regime, condition) for condition in cfg.conditions for regime in cfg.regimes]


def treated(run: RunContext, planted: Planted, treatment: Treatment, finals: dict[tuple[str, Condition], dict[str, float]]) -> Treated:
    """The cells' results as summary keys and saved models (in cell order), and plots/treat.png."""
    out, models = dict(treatment.summary), {}
    for regime, condition in cells(run.cfg.treat):
        row = treat_row(regime, condition)
        out.update(treat_keys(row, planted.task.variant, finals[regime, condition]))
        models[row] = run.dir.stage(treat_stage(regime, condition)).model
    plot_treatment(run.tracker.metrics_path, [treat_stage(*cell) for cell in cells(run.cfg.treat)], run.dir.plot("treat"))
    return Treated(models, out)


def treat(run: RunContext, planted: Planted, located: Located) -> Treated:
    """Every regime x condition cell of cfg.treat on copies of the planted model, one after the other.

    Summary keys: treat.<regime>.<condition>.<variant>.<measure> (final measures of the cell, and
    the mean circuit gradient share over the cell for gradient regimes), with the same measures for
    the controls: treat.start.<variant>.* (the untreated planted model) and treat.fresh.<variant>.*
    (a randomly initialised model of the same architecture); plots/treat.png shows every measure
    against the forward-pass budget per cell.
    """
    treatment = prepare_treatment(run, planted, located)
    finals = {cell: treat_one(run, planted, treatment, *cell, model=planted.model) for cell in cells(run.cfg.treat)}
    load_weights(planted.model, run.cfg.model, planted.path)  # leave the caller the planted model
    return treated(run, planted, treatment, finals)


def treat_aware(run: RunContext, planted: Planted, located: Located) -> dict[str, Path]:
    """The trigger-aware honest model, planted and then treated like the planted model; its saved weights by row.

    Rows: aware (untreated, models/aware) and <regime>_aware.<condition>. Treated by the same regimes
    on the same data and budget (probe_penalty with the planted model's frozen probe), it is the
    yardstick that has seen the trigger and never had the backdoor. Its cells are measured by
    behaviour only: the circuit measures belong to the planted model.
    """
    cfg, task = run.cfg, planted.task
    require(task, "aware_honest", "the trigger-aware yardstick (revive.aware_control)")
    aware = plant(run, task.aware_honest(), name="aware", stage="plant_aware")
    frozen, hook = frozen_probe(run, aware.model, located)
    held_out = task.eval_set(cfg.run.seed)

    def behaviour(model: torch.nn.Module) -> dict[str, float]:
        return {k: v for k, v in task.evaluate(model, held_out).items() if k != "loss"}

    models = {"aware": aware.path}
    for regime, condition in cells(cfg.treat):
        stage = treat_stage(f"{regime}_aware", condition)
        treat_cell(
            aware.model, cfg.model, task, cfg.treat, cfg.training, regime, condition, seed=cfg.run.seed,
            cell=run.dir.stage(stage), start=aware.path, evaluate=behaviour, log=run.tracker.stage(stage),
            probe=(frozen.probability, hook), device=run.device,
        )
        models[treat_row(f"{regime}_aware", condition)] = run.dir.stage(stage).model
    return models
