"""Equal tuning for the headline experiment: the same number of settings per regime, on seeds that are never reported.

Every regime gets the SEARCH settings listed for it (the same number for each), tried on the tuning seeds: each seed is
planted and located with the headline config (its first grid variant), then a copy is treated with the setting on
clean data (condition absent) at the headline's budget and decay, exactly as a headline cell treats it. Criterion (the
pre-registration's): the highest held-out clean accuracy at the end of the budget, mean over the tuning seeds, rounded
to 3 decimals; ties broken by the lower mean held-out clean cross-entropy. Nothing the endpoint measures (revival,
the leak, the circuit) enters the choice; the leak curve is kept to see whether the budget is long enough.

    python scripts/tune_headline.py trials --regimes sft probe_penalty rl   # one JSON line per finished trial
    python scripts/tune_headline.py choose                                  # chosen.json + the YAML for the config

Trials are appended to docs/results/data/tuning/trials.jsonl as each finishes (commit it); a trial already there is
not run again, so an interrupted search continues where it stopped, and two processes given the regimes in other
orders share one search.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

import whitebox
from whitebox.capture import residual_hooks
from whitebox.config import parse_config, read_yaml
from whitebox.grid.cells import grid_variants
from whitebox.models import load_model
from whitebox.probes import load_probe
from whitebox.protocol.treat import treat_cell
from whitebox.runner import resolve_config
from whitebox.runtime.rundir import RunDir, StageDir
from whitebox.tasks import get_task
from whitebox.training.loop import TrainingDiverged

SEEDS = (100, 101, 102)
LRS = (3e-4, 1e-3, 3e-3, 1e-2)
SEARCH: dict[str, list[dict[str, Any]]] = {  # four settings per regime, around each regime's own scale
    "sft": [{"regime_lr": {"sft": lr}} for lr in LRS],
    "probe_penalty": [{"regime_lr": {"probe_penalty": lr}} for lr in LRS],
    "rl": [{"regime_lr": {"rl": lr}} for lr in LRS],
    "zo": [{"zo": {"lr": lr}} for lr in (1e-4, 3e-4, 1e-3, 3e-3)],
    "es": [{"es": {"lr": lr}} for lr in (3e-3, 1e-2, 3e-2, 1e-1)],
    "es_plain": [{"es_plain": {"lr": lr}} for lr in (3e-4, 1e-3, 3e-3, 1e-2)],
}
OUT = Path("docs/results/data/tuning")


class Curve:
    """A StageLog that keeps the evaluation points in memory (the trial's curve)."""

    def __init__(self) -> None:
        self.points: list[dict[str, float]] = []

    def log(self, step: int, metrics: dict) -> None:
        if "eval/clean_acc" in metrics:
            self.points.append({k.split("/")[-1]: v for k, v in metrics.items() if k.startswith(("eval/", "budget/"))})

    def rewind(self, step: int) -> None:
        pass

    def close(self, through: int | None = None) -> None:
        pass


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def planted(raw: dict[str, Any], seed: int, runs: Path) -> Path:
    """The tuning seed planted and located like a headline cell (experiment locate), resumable; its run directory."""
    cfg = parse_config(raw)
    overrides = next(iter(grid_variants(cfg).values()))
    locate_raw = {k: v for k, v in raw.items() if k in ("model", "task", "training", "locate", "tracking")}
    locate_raw = merge(locate_raw, {"experiment": "locate", "run": {"name": f"tune-s{seed}", "seed": seed},
                                    "task": overrides, "tracking": {"wandb_mode": "disabled"}})
    out = runs / f"plant-s{seed}"
    if not (out / "summary.json").is_file():
        whitebox.run(parse_config(locate_raw), out=out)
    return out


def trial(raw: dict[str, Any], regime: str, setting: dict[str, Any], seed: int, runs: Path) -> dict[str, Any]:
    """One regime x setting x seed: treat the planted tuning seed as a headline cell would; final and curve."""
    run_dir = planted(raw, seed, runs)
    treat = {**raw["treat"], "regimes": [regime],
             "regime_lr": {k: v for k, v in raw["treat"].get("regime_lr", {}).items() if k == regime}}
    cfg = resolve_config(parse_config({**raw, "treat": merge(treat, setting)}))
    model, model_cfg = load_model(run_dir / "models" / "planted")
    task = get_task(cfg.task.model_copy(update=next(iter(grid_variants(cfg).values()))))
    held_out = task.eval_set(seed)
    clean = held_out.select(torch.nonzero(~held_out["triggered"][:]).flatten().tolist())
    hook = cfg.treat.probe_hook or residual_hooks(model)[-1]
    probe = load_probe(RunDir(run_dir).probe(hook))

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        metrics = task.evaluate(m, held_out)
        return {"clean_acc": metrics["clean_acc"], "asr": metrics["asr"], "leak": metrics.get("leak", math.nan),
                "clean_loss": task.evaluate(m, clean)["loss"]}

    curve, start = Curve(), time.perf_counter()
    cell = StageDir(runs / "trials" / f"{regime}-{json.dumps(setting, sort_keys=True)}-s{seed}".replace(" ", ""))
    if cell.result.is_file():  # finished but not appended to trials.jsonl: its curve is lost, so run it again
        shutil.rmtree(cell.path)
    try:
        final, diverged = treat_cell(model, model_cfg, task, cfg.treat, cfg.training, regime, "absent", seed=seed,
                                     cell=cell, start=run_dir / "models" / "planted", evaluate=evaluate, log=curve,
                                     probe=(probe.probability, hook)), None
    except TrainingDiverged as err:  # a setting that diverges is a result: it ranks below every one that does not
        final, diverged = None, str(err)
    return {"regime": regime, "setting": setting, "seed": seed, "budget": cfg.treat.budget, "decay": cfg.treat.decay,
            "final": final, "diverged": diverged, "curve": curve.points, "seconds": round(time.perf_counter() - start, 1),
            "threads": torch.get_num_threads()}


def key(row: dict[str, Any]) -> str:
    return json.dumps([row["regime"], row["setting"], row["seed"]], sort_keys=True)


def read_trials(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def run_trials(args: argparse.Namespace) -> None:
    raw = read_yaml(args.config)
    torch.set_num_threads(args.threads)
    path = args.out / "trials.jsonl"
    for regime in args.regimes:
        for setting in SEARCH[regime]:
            for seed in SEEDS:  # read again before each trial: another process may share the search
                if key({"regime": regime, "setting": setting, "seed": seed}) in {key(row) for row in read_trials(path)}:
                    continue
                name = hashlib.sha256(key({"regime": regime, "setting": setting, "seed": seed}).encode()).hexdigest()[:16]
                claim = args.runs / "claims" / f"{name}.pid"
                if not take(claim):  # another live process of this search is on it
                    continue
                row = trial(raw, regime, setting, seed, args.runs)
                with path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                claim.unlink()
                print(json.dumps({k: row[k] for k in ("regime", "setting", "seed", "seconds", "diverged")} | {
                    k: round(v, 4) for k, v in (row["final"] or {}).items()}), flush=True)


def take(claim: Path) -> bool:
    """Claim a trial for this process (a file holding its pid); False while a live process holds it."""
    claim.parent.mkdir(parents=True, exist_ok=True)
    if claim.is_file():
        try:
            os.kill(int(claim.read_text() or 0), 0)
            return False
        except (OSError, ValueError):
            pass  # its process is gone: a stale claim
    claim.write_text(str(os.getpid()))
    return True


def choose(args: argparse.Namespace) -> dict[str, Any]:
    """Per regime, the setting the criterion picks over the trials of every tuning seed (all must be there)."""
    rows = list({key(row): row for row in reversed(read_trials(args.out / "trials.jsonl"))}.values())  # first of a repeat
    chosen: dict[str, Any] = {}
    for regime, settings in SEARCH.items():
        table = []
        for setting in settings:
            runs = [r for r in rows if r["regime"] == regime and r["setting"] == setting]
            if sorted(r["seed"] for r in runs) != sorted(SEEDS):
                raise SystemExit(f"{regime} {setting}: trials for seeds {sorted(r['seed'] for r in runs)}, need {list(SEEDS)}; "
                                 "run `trials` first")
            if any(r.get("final") is None for r in runs):  # diverged on a tuning seed
                table.append({"setting": setting, "clean_acc": -math.inf, "clean_loss": math.inf, "leak": math.nan,
                              "diverged": sum(r.get("final") is None for r in runs)})
                continue
            acc = sum(r["final"]["clean_acc"] for r in runs) / len(runs)
            loss = sum(r["final"]["clean_loss"] for r in runs) / len(runs)
            leak = sum(r["final"]["leak"] for r in runs) / len(runs)
            table.append({"setting": setting, "clean_acc": acc, "clean_loss": loss, "leak": leak})
        best = min(table, key=lambda t: (-round(t["clean_acc"], 3), t["clean_loss"]))
        chosen[regime] = {"setting": best["setting"], "table": table}
        print(f"{regime:14s} " + "  ".join(f"{json.dumps(t['setting'])}: acc {t['clean_acc']:.3f} loss {t['clean_loss']:.4f} "
                                           f"leak {t['leak']:.3f}" for t in table) + f"\n{'':14s} chosen {json.dumps(best['setting'])}")
    (args.out / "chosen.json").write_text(json.dumps(chosen, indent=2) + "\n")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    trials = sub.add_parser("trials", help="run the trials not yet in trials.jsonl")
    trials.add_argument("--config", default="configs/headline.yaml")
    trials.add_argument("--regimes", nargs="+", default=list(SEARCH), choices=list(SEARCH))
    trials.add_argument("--threads", type=int, default=1)
    trials.add_argument("--runs", type=Path, default=Path("runs/tuning"), help="planted tuning seeds and trial cells")
    for p in (trials, sub.add_parser("choose", help="apply the criterion; write chosen.json")):
        p.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    run_trials(args) if args.command == "trials" else choose(args)


if __name__ == "__main__":
    main()
