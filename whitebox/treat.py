"""Protocol step 3: train the planted model to behave, with one regime per copy, on equal budgets.

Each cell (regime x condition) starts from the planted weights, trains on an independent seeded
stream of treatment data until its forward-pass budget is spent, and is measured at the same
budget points as every other cell. A cell lives in treat/<regime>-<condition>/ under the run
directory: checkpoints while it runs, model/ and result.json when it is done, so an interrupted
experiment resumes inside the running cell and never redoes a finished one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch

from whitebox.artifacts import read_json, write_json
from whitebox.attribution import GradientShare, MeasuredUpdater
from whitebox.config import Condition, ModelConfig, Regime, TrainingConfig, TreatConfig
from whitebox.models import load_weights, save_model
from whitebox.tasks import get_task
from whitebox.training import Rater, build_regime, match_rater, train
from whitebox.training.loop import StageLog
from whitebox.training.probe_penalty import ProbeScore

GRADIENT_REGIMES = ("sft", "rl", "probe_penalty")  # the regimes whose updates are gradients
TREAT_DATA_SPLIT = 3  # seed stream of treatment data, apart from plant (0, 1) and probe data (2)


def treatment_data(task_cfg: Any, condition: Condition, n: int, trigger_rate: float, seed: int) -> dict[str, torch.Tensor]:
    """Inputs with honest targets; triggered at `trigger_rate` when the trigger is present, never when absent."""
    rate = trigger_rate if condition == "present" else 0.0
    rows = get_task(task_cfg.name).generate(task_cfg, n, rate, seed=[seed, TREAT_DATA_SPLIT])[:]
    return {"tokens": rows["tokens"], "target": rows["honest_target"], "honest_target": rows["honest_target"]}


def fine_tuning(base: TrainingConfig, *, steps: int, batch_size: int, lr: float, eval_every: int) -> TrainingConfig:
    """Loop settings for training an already trained model further: constant lr, no warmup, one checkpoint kept.

    Checkpoints come at evaluations and at the end (the loop adds those), not on a step schedule.
    """
    return base.model_copy(update={
        "steps": steps, "batch_size": batch_size, "lr": lr, "warmup_steps": 0, "schedule": "constant",
        "eval_every": eval_every, "checkpoint_every": 10**12, "keep_checkpoints": 1,
    })


def trigger_kind(task_cfg: Any) -> str:
    """The name summary keys use for the task variant: the backdoor's trigger kind, else the task's name."""
    return getattr(task_cfg, "trigger", task_cfg.name)


def cell_name(regime: Regime, condition: Condition) -> str:
    return f"{regime}-{condition}"


def treat_cell(
    model: torch.nn.Module,
    model_cfg: ModelConfig,
    task_cfg: Any,
    cfg: TreatConfig,
    training: TrainingConfig,
    regime: Regime,
    condition: Condition,
    *,
    seed: int,
    cell_dir: str | Path,
    planted_dir: str | Path,
    evaluate: Callable[[torch.nn.Module], dict[str, float]],
    log: StageLog,
    probe: tuple[ProbeScore, str] | None = None,
    circuit_units: list | None = None,
    rater: Rater | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Treat `model` (loaded with the planted weights here) in one cell; return its final measures.

    With `circuit_units`, gradient regimes log the circuit's share of the gradient norm every
    logged step (train/circuit.grad_share). `rater` scores the answers of rl and reward-fed es
    (default: match_rater(), the honest one). A finished cell returns its saved result and leaves
    `model` with its treated weights.
    """
    cell_dir = Path(cell_dir)
    result_path = cell_dir / "result.json"
    if result_path.is_file():
        load_weights(model, model_cfg, cell_dir / "model")
        return read_json(result_path)["final"]
    load_weights(model, model_cfg, planted_dir)
    # the budget, not steps or eval_every, ends and measures a treatment
    loop_cfg = fine_tuning(training, steps=10**12, batch_size=cfg.batch_size, lr=cfg.lr, eval_every=10**12)
    data = {k: v.to(device) for k, v in treatment_data(task_cfg, condition, cfg.n_train, cfg.trigger_rate, seed).items()}
    torch.manual_seed(seed)
    updater, loss_fn = build_regime(regime, cfg, model, loop_cfg, seed=seed, device=device, rater=rater or match_rater(), probe=probe)
    if circuit_units and regime in GRADIENT_REGIMES:
        updater = MeasuredUpdater(updater, GradientShare(model, circuit_units))
    final = train(
        model, updater, loss_fn, data, loop_cfg, seed=seed, evaluate=evaluate, checkpoint_dir=cell_dir / "checkpoints",
        log=log, desc=cell_name(regime, condition), budget=cfg.budget,
        eval_every_budget=math.ceil(cfg.budget / cfg.eval_points),
    )
    save_model(model, model_cfg, cell_dir / "model", extra={"regime": regime, "condition": condition})
    write_json(result_path, {"regime": regime, "condition": condition, "budget": cfg.budget, "final": final})
    return final


def treat(ctx: Any, model: torch.nn.Module) -> dict[str, Any]:
    """Every regime x condition cell of cfg.treat on copies of the planted model; summary keys `treat.*`.

    Keys: treat.<regime>.<condition>.<trigger kind>.<measure> (final measures of the cell, and the
    mean circuit gradient share over the cell for gradient regimes), with the same measures for the
    controls: treat.start.<kind>.* (the untreated planted model) and treat.fresh.<kind>.* (a
    randomly initialised model of the same architecture); plots/treat.png shows every measure
    against the forward-pass budget per cell.
    """
    from tqdm.auto import tqdm

    from whitebox.attribution import Circuit, contrast_pairs
    from whitebox.capture import residual_hooks
    from whitebox.detectors import load_detector
    from whitebox.locate import fresh_model, probe_data
    from whitebox.measures import Measures
    from whitebox.probes import load_probe
    from whitebox.report import plot_treatment, read_metrics

    cfg, run_dir = ctx.cfg, ctx.run_dir
    task = get_task(cfg.task.name)
    hook = cfg.treat.probe_hook or residual_hooks(model)[-1]
    frozen = load_probe(run_dir / "probes" / hook)
    circuit_path = run_dir / "circuit" / "circuit.json"
    circuit = Circuit.load(circuit_path) if circuit_path.is_file() else None
    fit_rows, test_rows = probe_data(cfg.task, cfg.locate, cfg.run.seed)
    measures = Measures(
        cfg.task, cfg.model, cfg.locate, task.eval_set(cfg.task, cfg.run.seed), fit_rows, test_rows, frozen,
        load_detector(run_dir / "detectors" / hook), circuit,
        contrast_pairs(cfg.task, cfg.locate.circuit_pairs, seed=cfg.run.seed + 1) if circuit is not None else None,
        cfg.run.seed,
    )
    kind = trigger_kind(cfg.task)
    planted = run_dir / "models" / "planted"
    out = {f"treat.start.{kind}.{k}": v for k, v in measures(model).items()}
    out.update({f"treat.fresh.{kind}.{k}": v for k, v in measures(fresh_model(cfg.model, model, cfg.task)).items()})
    cells = []
    for condition in cfg.treat.conditions:
        for regime in cfg.treat.regimes:
            name, stage = cell_name(regime, condition), f"treat/{cell_name(regime, condition)}"
            final = treat_cell(
                model, cfg.model, cfg.task, cfg.treat, cfg.training, regime, condition, seed=cfg.run.seed,
                cell_dir=run_dir / "treat" / name, planted_dir=planted, evaluate=measures, log=ctx.tracker.stage(stage),
                probe=(frozen.probability, hook), circuit_units=circuit.units if circuit is not None else None,
                device=ctx.device,
            )
            shares = [r["train/circuit.grad_share"] for r in read_metrics(ctx.tracker.metrics_path, stage)
                      if math.isfinite(r.get("train/circuit.grad_share", math.nan))]  # NaN: a step with no gradient
            if shares:
                final = {**final, "grad_share": sum(shares) / len(shares)}
            tqdm.write(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in final.items()))
            out.update({f"treat.{regime}.{condition}.{kind}.{k}": v for k, v in final.items()})
            cells.append(stage)
    load_weights(model, cfg.model, planted)  # leave the caller the planted model
    plot_treatment(ctx.tracker.metrics_path, cells, run_dir / "plots" / "treat.png")
    return out
