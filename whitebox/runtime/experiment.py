"""Experiments by name: a pipeline, the config sections it reads, the checks it needs at config time.

An experiment is a function from a RunContext to its summary (flat keys), registered with
`register_experiment`. Its `sections` are the config sections it reads besides experiment, run and
tracking: a config that sets any other section is refused, and the run's config.yaml holds only
these. `check` runs at config time, before the run directory exists (a ConfigError there exits 2),
e.g. to require a task capability. A grid experiment names the experiment each of its cells runs
(`cells`), and `report` rebuilds an experiment's report.md from its files (`whitebox report`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from whitebox.config import ConfigError, ExperimentConfig
from whitebox.runtime.context import RunContext

Pipeline = Callable[[RunContext], dict[str, Any]]


@dataclass(frozen=True)
class Experiment:
    """A registered experiment."""

    name: str
    run: Pipeline
    sections: tuple[str, ...]
    check: Callable[[ExperimentConfig], None] | None = None
    cells: str | None = None  # a grid experiment: the experiment each cell runs
    report: Callable[[Path], tuple[Path, list[str]]] | None = None  # rebuild report.md: (path, cells not finished)
    unread: dict[str, str] = field(default_factory=dict)  # section.key it does not read -> what to do instead
    lanes: bool = False  # runs independent steps side by side (run.lanes, whitebox.runtime.lanes)

    def validate(self, cfg: ExperimentConfig) -> None:
        """Refuse sections (and keys) this experiment does not read, then run its own config-time check."""
        unread = [name for name in cfg.model_fields_set if name not in self.reads]
        if unread:
            raise ConfigError(
                f"{', '.join(sorted(unread))}: experiment {self.name!r} does not read "
                f"{'this section' if len(unread) == 1 else 'these sections'} (it reads {', '.join(self.sections)}); "
                "remove it from the config"
            )
        if not self.lanes and cfg.run.lanes != "auto":
            raise ConfigError(f"run.lanes: experiment {self.name!r} runs its steps one after the other and does not read "
                              "it; remove it")
        for key, instead in self.unread.items():
            section, _, name = key.partition(".")
            part = getattr(cfg, section)
            if getattr(part, name) != type(part).model_fields[name].default:  # a saved config.yaml spells out defaults
                raise ConfigError(f"{key}: experiment {self.name!r} does not read it; {instead}")
        if self.check is not None:
            self.check(cfg)

    @property
    def reads(self) -> tuple[str, ...]:
        return ("experiment", "run", "tracking", *self.sections)


EXPERIMENTS: dict[str, Experiment] = {}
# what experiments that plant their own model say of a checkpoint to probe
PLANTS_ITS_OWN = {"locate.checkpoint": "it plants its own model; to probe a saved one use experiment: probe or "
                                       "`whitebox probe fit`, and remove it here"}


def register_experiment(
    name: str,
    run: Pipeline,
    *,
    sections: tuple[str, ...],
    check: Callable[[ExperimentConfig], None] | None = None,
    cells: str | None = None,
    report: Callable[[Path], tuple[Path, list[str]]] | None = None,
    unread: dict[str, str] | None = None,
    lanes: bool = False,
) -> Experiment:
    """Make `experiment: <name>` run `run`."""
    experiment = Experiment(name, run, tuple(sections), check, cells, report, dict(unread or {}), lanes)
    EXPERIMENTS[name] = experiment
    return experiment
