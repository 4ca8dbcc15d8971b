"""The run directory and its records: config, environment, metrics.jsonl, summary.json and W&B.

The local files are the source of truth and are always written; W&B mirrors them and any W&B
failure only costs the mirror. Under torchrun only rank 0 writes them and holds the W&B run.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from whitebox.config import ExperimentConfig, config_to_dict, dump_yaml
from whitebox.runtime.artifacts import atomic_write, one_line, write_failed, write_json, write_text
from whitebox.runtime.distributed import is_main, main_only
from whitebox.runtime.env import environment, owner, read_env
from whitebox.runtime.records import check_digests, read_digests, read_lines, read_summary, stage_digest
from whitebox.runtime.rundir import RunDir
from whitebox.training.checkpoints import Owner

WANDB_INIT_SECONDS = 15.0  # how long online W&B may try to reach its server at a start (wandb's own default: 90 s)
ONLINE_FAILED = "WHITEBOX_WANDB_ONLINE_FAILED"  # why online W&B failed in this process; inherited by its workers

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
        self._lock = threading.RLock()  # lanes (whitebox.runtime.lanes) log from several threads

    def start(self, device: str) -> Tracker:
        """Write env.json on first start (kept on resume), check the finished stages' records, open the W&B run."""
        with main_only(wait=False) as writer:
            if writer:
                env_path = self.dir.env
                env = read_env(env_path) if env_path.is_file() else environment(self.cfg, device, self.sections)
                if not env_path.is_file():
                    write_json(env_path, env)
                drop_cut_line(self.metrics_path)
                check_digests(self.metrics_path, read_digests(self.dir.metrics_index), self.dir.metrics_index)
                self._start_wandb(env["wandb_id"])
        return self

    def owner(self) -> Owner | None:
        """Whose checkpoints this run writes and loads (rank 0 checks; other ranks load what it checked)."""
        return owner(read_env(self.dir.env)) if is_main() and self.dir.env.is_file() else None

    def stage(self, name: str) -> StageLogger:
        return StageLogger(self, name)

    def log(self, stage: str, step: int, metrics: dict[str, float]) -> None:
        with self._lock, main_only(wait=False) as writer:
            if writer:
                record = {"stage": stage, "step": step, "time": round(time.time(), 3), **metrics}
                append_line(self.metrics_path, json.dumps(record))
                self._mirror(lambda run: self._wandb_log(run, stage, step, metrics))

    def rewind(self, stage: str, step: int) -> None:
        """Drop this stage's records after `step` (they are recomputed on resume), atomically; the stage is open again."""
        with self._lock, main_only(wait=False) as writer:
            if not writer or not self.metrics_path.is_file():
                return
            lines = read_lines(self.metrics_path)
            kept = [line for line, record in lines if not (record["stage"] == stage and record["step"] > step)]
            if len(kept) != len(lines):
                digest = read_digests(self.dir.metrics_index).get(stage)
                if digest is not None and (digest.get("through") is None or digest["through"] > step):
                    self._set_digest(stage, None)  # it covered records dropped here
                write_text(self.metrics_path, "".join(line + "\n" for line in kept))

    def close_stage(self, stage: str, through: int | None = None) -> None:
        """Record how many records `stage` has (up to step `through`, all when it is finished) and their hash: a
        resume checks they are all still there."""
        with self._lock, main_only(wait=False) as writer:
            if writer:
                self._set_digest(stage, stage_digest(self.metrics_path, stage, through))

    def _set_digest(self, stage: str, digest: dict[str, Any] | None) -> None:
        digests = read_digests(self.dir.metrics_index)
        if digests.get(stage) == digest:
            return
        digests = {k: v for k, v in digests.items() if k != stage}
        write_json(self.dir.metrics_index, digests | ({stage: digest} if digest is not None else {}))

    def summary(self) -> dict[str, Any]:
        return read_summary(self.summary_path) if self.summary_path.is_file() else {}

    def update_summary(self, values: dict[str, Any]) -> dict[str, Any]:
        """Merge flat dotted keys into summary.json (atomic) and into the W&B summary."""
        with self._lock:
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

    def close(self, through: int | None = None) -> None:
        self.tracker.close_stage(self.stage, through)


def _init_timeout() -> dict[str, float]:
    """wandb.Settings' init_timeout: ours, unless the user set WANDB_INIT_TIMEOUT (which wandb then reads itself)."""
    return {} if os.environ.get("WANDB_INIT_TIMEOUT") else {"init_timeout": WANDB_INIT_SECONDS}


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
