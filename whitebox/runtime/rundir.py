"""The one place that knows a run directory's layout, the seed streams of the protocol, and the summary keys.

Every path a step writes or reads is a RunDir property or method; every seeded data stream the
generic steps draw is named in SEED_STREAMS (a task salts its own train/eval splits and contrast
pairs inside its own file); every summary key is built (and, for the reports, parsed) here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# name -> what follows the run seed in the seed list given to a task's sample(); one row per stream
SEED_STREAMS: dict[str, tuple[int, ...]] = {
    "probe_fit": (2, 0),  # probes and detectors are fitted on these ...
    "probe_test": (2, 1),  # ... and scored on these
    "probe_own_answer": (2, 2),  # questions whose answers the flawed-rater read-out of the model's own answer learns
    "probe_eval": (3, 0),  # `whitebox probe eval`: fresh data for a saved probe
    "treatment": (3,),  # treatment data
    "revival": (4,),  # revival data
    "ablation_reference": (0xAB1A7E,),  # untriggered inputs that mean and resample ablation average or draw over
}
FRESH_MODEL_SEED = 0x5EED  # torch seed of the untrained control model (the same for every run seed)
NOISE_CONTROL_SALT = 0x401CE  # with the run seed and the row's index, seeds a noise-matched control's noise
MEASURE_PAIRS_OFFSET = 1  # treatment measures draw contrast pairs with seed run.seed + 1, apart from locate's


def seed_stream(name: str, seed: int) -> list[int]:
    """The seed list of stream `name` for run seed `seed` (see SEED_STREAMS)."""
    return [seed, *SEED_STREAMS[name]]


@dataclass(frozen=True)
class StageDir:
    """A resumable unit of work (a treatment cell, a revival): checkpoints while it runs, result.json when done."""

    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def model(self) -> Path:
        return self.path / "model"

    @property
    def result(self) -> Path:
        return self.path / "result.json"


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def __truediv__(self, part: str) -> Path:
        return self.root / part

    def __str__(self) -> str:
        return str(self.root)

    # records every run keeps
    config = property(lambda self: self.root / "config.yaml")
    lock = property(lambda self: self.root / "run.lock")  # held by the one process writing here (runtime/locks.py)
    summary = property(lambda self: self.root / "summary.json")
    metrics = property(lambda self: self.root / "metrics.jsonl")
    metrics_index = property(lambda self: self.root / "metrics.stages.json")  # finished stages' record counts and hashes
    env = property(lambda self: self.root / "env.json")
    report = property(lambda self: self.root / "report.md")
    wandb = property(lambda self: self.root / "wandb")
    sweep = property(lambda self: self.root / "sweep.yaml")

    # protocol artifacts
    located = property(lambda self: self.root / "located.json")  # the locate step's summary, written last: it is done
    circuit = property(lambda self: self.root / "circuit" / "circuit.json")
    probe_table = property(lambda self: self.root / "probes" / "table.json")
    detection_table = property(lambda self: self.root / "detection.json")
    detection_report = property(lambda self: self.root / "detection.md")

    def model(self, name: str) -> Path:
        """A saved model: models/planted, models/honest."""
        return self.root / "models" / name

    def checkpoints(self, stage: str) -> Path:
        return self.root / "checkpoints" / stage

    def probe(self, hook: str, kind: str | None = None) -> Path:
        """probes/<hook>: the probe of locate.probe; with `kind`, probes/<kind>/<hook>: one more kind (locate.probes)."""
        return self.root / "probes" / hook if kind is None else self.root / "probes" / kind / hook

    def detector(self, hook: str) -> Path:
        return self.root / "detectors" / hook

    def plot(self, name: str) -> Path:
        return self.root / "plots" / f"{name}.png"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    def stage(self, stage: str) -> StageDir:
        """The directory of a resumable stage named like its metrics (treat/sft-present, deceive/rl, fix/sft-rl)."""
        return StageDir(self.root / stage)

    def revival(self, name: str) -> StageDir:
        return StageDir(self.root / "revive" / name)

    def cell(self, label: str) -> Path:
        """A grid cell: a complete run directory of its own."""
        return self.root / "cells" / label

    def cell_lock(self, label: str) -> Path:
        return self.root / "cells" / f"{label}.lock"

    def cell_log(self, label: str) -> Path:
        return self.root / "cells" / f"{label}.log"

    def behaviour(self, name: str) -> Path:
        """A sub-run of the detection benchmark: a complete run directory of its own."""
        return self.root / "behaviours" / name


# summary keys: <step>.<measure>, and for treatment treat.<row>.<variant>.<measure>
def step_keys(step: str, metrics: dict[str, float]) -> dict[str, float]:
    """`{step}.{measure}` for every measure (plant.clean_acc, locate.probe_auroc_best, grok.step_test_acc_0.9, ...)."""
    return {f"{step}.{key}": value for key, value in metrics.items()}


NOISE = "_noise"  # a revival row's regime suffix for the noise-matched control: sft_noise.absent
NOVEL = "_novel"  # a revival row's regime suffix for the novel-backdoor control: sft_novel.absent, sft_novel_aware.absent


def treat_row(regime: str, condition: str) -> str:
    """A treated model's row name in summary keys and reports: sft.present."""
    return f"{regime}.{condition}"


def split_row(row: str) -> tuple[str, str]:
    """(regime, condition) of a treated row; the inverse of treat_row."""
    regime, condition = row.rsplit(".", 1)
    return regime, condition


def treat_key(row: str, variant: str, measure: str) -> str:
    """treat.<row>.<variant>.<measure>: row is a treat_row, or a control (start, fresh, honest)."""
    return f"treat.{row}.{variant}.{measure}"


def treat_keys(row: str, variant: str, metrics: dict[str, float]) -> dict[str, float]:
    return {treat_key(row, variant, key): value for key, value in metrics.items()}


def cell_name(regime: str, condition: str) -> str:
    """A treatment cell's directory and progress-bar name: sft-present."""
    return f"{regime}-{condition}"


def treat_stage(regime: str, condition: str) -> str:
    """A treatment cell's stage in metrics.jsonl and its directory under the run: treat/sft-present."""
    return f"treat/{cell_name(regime, condition)}"


def cell_label(variant: str, seed: int) -> str:
    """A grid cell's label: token-s0."""
    return f"{variant}-s{seed}"
