"""A grid's finished cells as small JSON records in a directory meant to be committed (`grid.results`).

A long grid outlives the machine it runs on, and runs/ is not committed, so with grid.results set
each cell that finishes leaves <results>/<label>.json: its config, summary, the evaluation records
of its treatment curves and where it ran (versions, commit, threads). A cell with a record there is
read back instead of run, so the grid continues on a fresh machine from the committed cells;
`whitebox report <results>` rebuilds the report from the records alone. A record made with another
config (apart from tracking and how many lanes ran it) is refused, naming the keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from whitebox.config import ExperimentConfig, config_to_dict, dump_yaml
from whitebox.runtime.artifacts import ArtifactError, sha256_json, write_json, write_text
from whitebox.runtime.env import read_env
from whitebox.runtime.records import read_object, read_records, read_summary
from whitebox.runtime.rundir import RunDir

FORMAT = 1
IGNORED = ("tracking", "run.out_dir", "run.lanes")  # settings that do not change what a cell computes


def results_dir(cfg: ExperimentConfig, given: Path | None = None) -> Path | None:
    """Where the grid's cells are recorded: `given` (a records directory being reported), else grid.results, else None."""
    return given or (Path(cfg.grid.results) if cfg.grid.results is not None else None)


def record_path(results: Path, label: str) -> Path:
    return Path(results) / f"{label}.json"


def write_config(results: Path, cfg: ExperimentConfig, sections: tuple[str, ...]) -> Path:
    """The grid's config beside its records, so that `whitebox report <results>` knows what was run."""
    return write_text(Path(results) / "config.yaml", dump_yaml(cfg, sections))


def treatment_curves(run_dir: Path, stages: str | tuple[str, ...] = "treat/") -> dict[str, list[dict[str, Any]]]:
    """The evaluation records of every stage named `stages`... (default: the treatments) of a run's metrics.jsonl."""
    curves: dict[str, list[dict[str, Any]]] = {}
    for record in read_records(RunDir(run_dir).metrics):
        if record["stage"].startswith(stages) and any(k.startswith("eval/") for k in record):
            curves.setdefault(record["stage"], []).append(record)
    return curves


def write_record(results: Path, label: str, cell_cfg: ExperimentConfig, sections: tuple[str, ...], run_dir: Path,
                 stages: str | tuple[str, ...] = "treat/") -> Path:
    """<results>/<label>.json for the finished run in `run_dir`: config, summary, curves of `stages`, environment."""
    env = read_env(RunDir(run_dir).env)
    body = {
        "format": FORMAT,
        "cell": label,
        "config": config_to_dict(cell_cfg, sections),
        "summary": read_summary(RunDir(run_dir).summary),
        "curves": treatment_curves(run_dir, stages),
        "env": {k: env.get(k) for k in ("versions", "git", "device", "torch_threads", "fast_path", "started", "amendments")},
    }
    return write_json(record_path(results, label), {**body, "sha256": sha256_json(body)})


def read_record(results: Path, label: str, cell_cfg: ExperimentConfig | None = None,
                sections: tuple[str, ...] | None = None) -> dict[str, Any] | None:
    """The record of cell `label` (None if there is none), checked intact and, given `cell_cfg`, made with that config."""
    path = record_path(results, label)
    if not path.is_file():
        return None
    fix = "restore it with `git checkout` or delete it, and that cell runs again"
    data = read_object(path, fix)
    body = {k: v for k, v in data.items() if k != "sha256"}
    if data.get("sha256") != sha256_json(body) or data.get("format") != FORMAT or data.get("cell") != label:
        raise ArtifactError(f"{path}: not an intact record of cell {label} (edited, or another format); {fix}")
    if cell_cfg is not None:
        try:  # today's schema fills keys added since with their defaults
            then = computed_settings(config_to_dict(ExperimentConfig.model_validate(data["config"]), sections))
        except ValueError as err:
            raise ArtifactError(f"{path}: its config no longer validates ({' '.join(str(err).split())[:200]}); {fix}") from None
        want = computed_settings(config_to_dict(cell_cfg, sections))
        differ = sorted(k for k in set(want) | set(then) if want.get(k) != then.get(k))
        if differ:
            raise ArtifactError(f"{path}: cell {label} was run with another config ({', '.join(differ[:5])} differ); run "
                                f"this config into another grid.results directory, or delete the record to run the cell again")
    return data


def computed_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Flat dotted keys of a cell config, without the settings that do not change what it computes."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}{key}.", sub)
        else:
            flat[prefix[:-1]] = value

    walk("", config)
    return {k: v for k, v in flat.items() if not any(k == i or k.startswith(f"{i}.") for i in IGNORED)}
