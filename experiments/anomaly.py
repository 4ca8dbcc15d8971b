"""Detection benchmark: probe and clean-only detector per residual hook, for every planted behaviour.

Three behaviours, each planted in its own sub-run under <run>/behaviours/<name>/ (experiment
`plant`, resumable like grid cells): backdoor_token and backdoor_computed (the run's backdoor task
with that trigger kind; hidden label `triggered`) and flawed_rater (hidden label `blind_spot`). The
flawed_rater row uses an honestly trained model, so it measures whether the blind-spot question
type is detectable, not whether a learned lie is (the deceived models are experiments/flawed_rater.py's).
Model, training and locate sections come from the run's config; the flawed_rater task takes the
backdoor task's seq_len, n_values, n_train and n_eval. Writes detection.md and detection.json;
summary keys detect.<behaviour>.<method>.{auroc_best, recall_best, fresh_auroc_best, hook_best}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from whitebox.artifacts import write_json, write_text
from whitebox.config import ConfigError, ExperimentConfig
from whitebox.detection import best_summary, detection_rows, format_detection_table
from whitebox.grid import run_or_resume
from whitebox.models import load_model
from whitebox.runner import RunContext

SHARED_TASK_FIELDS = ("seq_len", "n_values", "n_train", "n_eval")


def behaviour_configs(cfg: ExperimentConfig) -> dict[str, ExperimentConfig]:
    """The run's config narrowed to one `plant` sub-run per behaviour, keyed by behaviour name."""
    if cfg.task.name != "backdoor":
        raise ConfigError(f"task.name: the anomaly experiment needs the 'backdoor' task section, got {cfg.task.name!r}")
    base = cfg.model_dump(mode="json")
    base["experiment"] = "plant"
    base["model"].update(d_vocab=None, n_ctx=None)  # resolved from the run's task; each behaviour resolves its own
    base["tracking"]["wandb_group"] = cfg.tracking.wandb_group or cfg.run.name
    tasks = {
        "backdoor_token": {**base["task"], "trigger": "token"},
        "backdoor_computed": {**base["task"], "trigger": "computed"},
        "flawed_rater": {"name": "flawed_rater", **{k: base["task"][k] for k in SHARED_TASK_FIELDS}},
    }
    return {
        name: ExperimentConfig.model_validate({**base, "task": task, "run": {**base["run"], "name": f"{cfg.run.name}-{name}"}})
        for name, task in tasks.items()
    }


def behaviour_dir(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / "behaviours" / name


def run(ctx: RunContext) -> dict[str, Any]:
    from tqdm.auto import tqdm

    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for name, sub in behaviour_configs(ctx.cfg).items():
        sub_dir = behaviour_dir(ctx.run_dir, name)
        planted = run_or_resume(sub, sub_dir)
        summary |= {f"plant.{name}.{k.removeprefix('plant.')}": v for k, v in planted.items()
                    if k.startswith("plant.") and isinstance(v, (int, float))}
        model, model_cfg = load_model(sub_dir / "models" / "planted", ctx.device)
        rows += detection_rows(model.eval(), model_cfg, sub.task, ctx.cfg.locate, ctx.cfg.run.seed, name)
    table = format_detection_table(rows)
    write_json(ctx.run_dir / "detection.json", rows)
    write_text(ctx.run_dir / "detection.md", "# Detection benchmark\n\nHeld-out AUROC and recall at 1% FPR per "
               "residual hook (answer position). probe: logistic on the hidden label, control = shuffled labels; "
               "detector: Mahalanobis fitted on clean inputs only; fresh = same method on an untrained model. "
               "flawed_rater: an honest model, so detectability of the blind-spot question type, not of a lie.\n\n"
               f"{table}\n")
    tqdm.write(table)
    metrics = best_summary(rows)
    ctx.tracker.log("detect", 0, {k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    return {**summary, **metrics}
