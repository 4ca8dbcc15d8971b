"""Runs longer than a machine lasts, one per seed: each finished seed recorded (the grid's sealed format) and
committed as it finishes, and read back on a fresh machine instead of run again."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from whitebox.config import ExperimentConfig, load_config
from whitebox.grid.records import read_record, treatment_curves, write_record
from whitebox.runner import find_experiment, run_or_resume


def seed_config(config: str | Path, seed: int, label: str | None, sets: list[str]) -> ExperimentConfig:
    """One seed's config: the file, its --set overrides, the seed and the run's name (<label>-s<seed>, or s<seed>)."""
    name = f"{label}-s{seed}" if label else f"s{seed}"
    return load_config(config, [*sets, f"run.seed={seed}", f"run.name={name}", "tracking.wandb_mode=disabled"])


def recorded_run(cfg: ExperimentConfig, out: Path, stages: str | tuple[str, ...], results: Path | None = None,
                 commit: bool = False) -> dict[str, Any]:
    """{"summary", "curves"} of one seed: read from its record in `results`, else run (or resumed) in out/<name>,
    recorded with the evaluation curves of the stages named `stages`..., and committed with `commit`."""
    name, sections = cfg.run.name, find_experiment(cfg.experiment).sections
    record = None if results is None else read_record(results, name, cfg, sections)
    if record is not None:
        return {"summary": record["summary"], "curves": record["curves"]}
    summary = run_or_resume(cfg, out / name)
    curves = treatment_curves(out / name, stages)
    if results is not None:
        path = write_record(results, name, cfg, sections, out / name, stages=stages)
        if commit:
            commit_record(path, f"{Path(results).name}: seed {name} recorded")
        print(f"recorded {path}", flush=True)
    return {"summary": summary, "curves": curves}


def commit_record(path: Path, message: str, tries: int = 5) -> bool:
    """git-commit one record. Another run's commit holding the index lock is waited out; a git that keeps failing
    leaves the record written and uncommitted, says so in one line, and the seeds go on."""
    for attempt in range(tries):
        done = subprocess.run(["git", "add", "--", str(path)], capture_output=True, text=True)
        if done.returncode == 0:
            done = subprocess.run(["git", "commit", "-q", "-m", message, "--", str(path)], capture_output=True, text=True)
        if done.returncode == 0:
            return True
        time.sleep(1 + 2 * attempt)
    why = (done.stderr.strip().splitlines() or ["git failed"])[-1]
    print(f"{path} is written but not committed ({why}); commit it by hand", flush=True)
    return False
