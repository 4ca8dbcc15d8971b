"""The run directory and its records: config, environment, metrics.jsonl, summary.json and W&B.

The local files are the source of truth and are always written; W&B mirrors them and any W&B
failure only costs the mirror. Under torchrun only rank 0 writes them and holds the W&B run.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
import uuid
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

from whitebox.config import ExperimentConfig, config_to_dict, dump_yaml
from whitebox.runtime.artifacts import atomic_write, one_line, read_json, write_failed, write_json, write_text
from whitebox.runtime.distributed import main_only
from whitebox.runtime.rundir import RunDir

WANDB_INIT_SECONDS = 15.0  # how long online W&B may try to reach its server at a start (wandb's own default: 90 s)
ONLINE_FAILED = "WHITEBOX_WANDB_ONLINE_FAILED"  # why online W&B failed in this process; inherited by its workers
PACKAGES = ("torch", "transformer-lens", "transformers", "datasets", "einops", "wandb", "pydantic", "numpy", "safetensors")


class Tracker:
    """Appends metrics to metrics.jsonl (and W&B), merges final numbers into summary.json."""

    def __init__(self, run_dir: str | Path | RunDir, cfg: ExperimentConfig, sections: Sequence[str] | None = None):
        self.dir = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))
        self.run_dir = self.dir.root
        self.cfg = cfg
        self.sections = sections  # the config sections the experiment reads: what W&B's config shows
        self.metrics_path = self.dir.metrics
        self.summary_path = self.dir.summary
        self._wandb: Any = None
        self._stages: set[str] = set()

    def start(self, device: str) -> Tracker:
        """Write env.json on first start (kept on resume) and open the W&B run."""
        with main_only(wait=False) as writer:
            if writer:
                env_path = self.dir.env
                env = read_json(env_path) if env_path.is_file() else environment(self.cfg, device)
                if not env_path.is_file():
                    write_json(env_path, env)
                drop_cut_line(self.metrics_path)
                self._start_wandb(env["wandb_id"])
        return self

    def stage(self, name: str) -> StageLogger:
        return StageLogger(self, name)

    def log(self, stage: str, step: int, metrics: dict[str, float]) -> None:
        with main_only(wait=False) as writer:
            if writer:
                record = {"stage": stage, "step": step, "time": round(time.time(), 3), **metrics}
                append_line(self.metrics_path, json.dumps(record))
                self._mirror(lambda run: self._wandb_log(run, stage, step, metrics))

    def rewind(self, stage: str, step: int) -> None:
        """Drop this stage's records after `step` (they are recomputed on resume), atomically."""
        with main_only(wait=False) as writer:
            if not writer or not self.metrics_path.is_file():
                return
            lines = self.metrics_path.read_text().splitlines()
            kept = [line for line in lines if not _after(line, stage, step)]
            if len(kept) != len(lines):
                write_text(self.metrics_path, "".join(line + "\n" for line in kept))

    def summary(self) -> dict[str, Any]:
        return read_json(self.summary_path) if self.summary_path.is_file() else {}

    def update_summary(self, values: dict[str, Any]) -> dict[str, Any]:
        """Merge flat dotted keys into summary.json (atomic) and into the W&B summary."""
        summary = {**self.summary(), **values}
        with main_only() as writer:
            if writer:
                write_json(self.summary_path, summary)
                self._mirror(lambda run: run.summary.update(values))
        return summary

    def finish(self) -> None:
        self._mirror(lambda run: run.finish())
        self._wandb = None

    def _start_wandb(self, run_id: str) -> None:
        """Open the W&B run; online falls back to offline (sync it later), and any failure leaves the local files.

        Online waits at most WANDB_INIT_SECONDS for the server (WANDB_INIT_TIMEOUT, if set, instead); once it
        has failed, this process and the workers it starts go offline at once instead of waiting again.
        """
        mode = self.cfg.tracking.wandb_mode
        if mode == "disabled":
            return
        failure: BaseException | None = None
        if mode != "online" or not os.environ.get(ONLINE_FAILED):
            try:
                self._wandb = self._init_wandb(run_id, mode)
                return
            except Exception as err:  # noqa: BLE001 - W&B must never cost the local records
                failure = err
        if mode == "online":
            reason = one_line(failure) if failure is not None else os.environ[ONLINE_FAILED]
            os.environ[ONLINE_FAILED] = reason
            try:
                import wandb

                wandb.teardown()  # the failed online attempt still holds the run id
                self._wandb = self._init_wandb(run_id, "offline")
                warnings.warn(f"W&B online could not start ({reason}); logging offline under "
                              f"{self.dir.wandb} instead: upload it later with `wandb sync`")
                return
            except Exception as err:  # noqa: BLE001
                failure = err
        warnings.warn(f"W&B could not start ({one_line(failure)}); metrics are still written to {self.metrics_path}")
        self._wandb = None

    def _init_wandb(self, run_id: str, mode: str) -> Any:
        import wandb

        tracking = self.cfg.tracking
        in_sweep = bool(os.environ.get("WANDB_SWEEP_ID"))  # launched by `wandb agent`: W&B names run, project, entity
        return wandb.init(
            project=None if in_sweep else tracking.wandb_project,
            entity=None if in_sweep else tracking.wandb_entity,
            name=self.cfg.run.name,
            id=None if in_sweep else run_id,
            resume="allow",
            dir=str(self.run_dir),
            mode=mode,
            tags=tracking.tags,
            group=tracking.wandb_group,
            reinit="create_new",  # a grid experiment holds its own run while each cell runs
            config=config_to_dict(self.cfg, self.sections),
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, **_init_timeout()),
        )

    def _wandb_log(self, run: Any, stage: str, step: int, metrics: dict[str, float]) -> None:
        if stage not in self._stages:
            run.define_metric(f"{stage}/*", step_metric=f"{stage}/step")
            self._stages.add(stage)
        run.log({f"{stage}/step": step, **{f"{stage}/{k}": v for k, v in metrics.items()}})

    def log_images(self, images: dict[str, Path]) -> None:
        """PNG files into the W&B run's summary (the files themselves stay under the run directory)."""
        def log(run: Any) -> None:
            import wandb

            run.summary.update({name: wandb.Image(str(path)) for name, path in images.items()})

        self._mirror(log)

    def _mirror(self, call: Callable[[Any], Any]) -> None:
        """Apply `call` to the W&B run; on any W&B error, warn once and keep only the local files."""
        if self._wandb is None:
            return
        try:
            call(self._wandb)
        except Exception as err:  # noqa: BLE001 - W&B must never cost the local records
            warnings.warn(f"W&B stopped working ({err}); the local files in {self.run_dir} stay complete")
            self._wandb = None


class StageLogger:
    """The loop's view of the tracker: one stage's metrics."""

    def __init__(self, tracker: Tracker, stage: str):
        self.tracker, self.stage = tracker, stage

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.tracker.log(self.stage, step, metrics)

    def rewind(self, step: int) -> None:
        self.tracker.rewind(self.stage, step)


def _init_timeout() -> dict[str, float]:
    """wandb.Settings' init_timeout: ours, unless the user set WANDB_INIT_TIMEOUT (which wandb then reads itself)."""
    return {} if os.environ.get("WANDB_INIT_TIMEOUT") else {"init_timeout": WANDB_INIT_SECONDS}


def environment(cfg: ExperimentConfig, device: str) -> dict[str, Any]:
    """What is needed to reproduce the run: seed, versions, git commit, device, command."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    from whitebox import __version__

    versions["whitebox"] = __version__
    return {
        "seed": cfg.run.seed,
        "versions": versions,
        "git": git_state(Path(__file__).resolve().parent),
        "device": device,
        "platform": platform.platform(),
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wandb_id": uuid.uuid4().hex[:12],
    }


def git_state(path: Path) -> dict[str, Any] | None:
    """Commit and dirtiness of the checkout that holds `path`, or None outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, timeout=10, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def append_line(path: Path, line: str) -> None:
    """Append one record; if the disk refuses it, cut the file back so no partial line is left."""
    data = (line + "\n").encode()
    try:
        with open(path, "ab", buffering=0) as f:
            size = f.seek(0, os.SEEK_END)
            try:
                written = 0
                while written < len(data):
                    written += f.write(data[written:])
            except OSError:
                with contextlib.suppress(OSError):
                    f.truncate(size)
                raise
    except OSError as err:
        raise write_failed(path, err) from None


def drop_cut_line(path: Path) -> None:
    """Drop a last record cut short by a kill (no final newline), so the next append starts a fresh line."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
    data = path.read_bytes()
    atomic_write(path, lambda tmp: tmp.write_bytes(data[: data.rfind(b"\n") + 1]))


def write_config(run_dir: RunDir, cfg: ExperimentConfig, sections: Sequence[str] | None = None) -> None:
    """config.yaml: the resolved config, only the sections the experiment reads (with `sections`)."""
    write_text(run_dir.config, dump_yaml(cfg, sections))


def _after(line: str, stage: str, step: int) -> bool:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return True  # a line cut short by a kill is dropped
    return record.get("stage") == stage and record.get("step", 0) > step
