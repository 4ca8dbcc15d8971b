"""Treatment regimes by name: one registration each, with what the regime sees declared beside its builder.

A regime is a builder of the (updater, loss_fn) pair the training loop runs, plus declared
properties: whether its updates are gradients (`sees_gradients`; the circuit's gradient share is
measured for those), whether it can learn from a rater's reward, whether it needs the located
probe, and its settings section `treat.<name>` (a config Section, or None). Registering a regime
is all it takes for `treat.regimes`, `deception.*` and the config reference to accept it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from whitebox.config.schema import Section, TrainingConfig, TreatConfig, add_regime
from whitebox.tasks.base import Rater
from whitebox.training.backprop import Backprop
from whitebox.training.es import ESConfig, EvolutionStrategies, PlainESConfig
from whitebox.training.feedback import Reward, Supervised
from whitebox.training.loop import LossFn, Updater
from whitebox.training.probe_penalty import ProbePenalty, ProbePenaltyConfig, ProbeScore
from whitebox.training.rl import Reinforce, RLConfig
from whitebox.training.zo import ZerothOrder, ZOConfig


@dataclass(frozen=True)
class Setup:
    """What a regime's builder gets besides the model and its settings."""

    training: TrainingConfig  # AdamW and loop settings (gradient regimes use its lr and clipping)
    seed: int
    device: torch.device
    rater: Rater | None = None  # scores the model's own answers (reward-fed regimes)
    probe: tuple[ProbeScore, str] | None = None  # (probe score, hook name) of the located probe


Builder = Callable[[torch.nn.Module, "Section | None", Setup], tuple[Updater, LossFn]]


@dataclass(frozen=True)
class Regime:
    """A registered treatment regime."""

    name: str
    build: Builder
    sees_gradients: bool
    settings: type[Section] | None = None
    uses_rater: bool = False  # can learn from a rater's reward
    needs_probe: bool = False

    def wants_rater(self, settings: Section | None) -> bool:
        """Whether this regime, with these settings, learns from a rater (es only does with feedback=reward)."""
        return self.uses_rater and getattr(settings, "feedback", "reward") == "reward"


REGIMES: dict[str, Regime] = {}


def register_regime(
    name: str,
    build: Builder,
    *,
    sees_gradients: bool,
    settings: type[Section] | None = None,
    uses_rater: bool = False,
    needs_probe: bool = False,
) -> Regime:
    """Add a regime: `treat.regimes: [<name>]` then builds it, and `treat.<name>` holds its settings."""
    regime = Regime(name, build, sees_gradients, settings, uses_rater, needs_probe)
    add_regime(name, settings, uses_rater=uses_rater, needs_probe=needs_probe)
    REGIMES[name] = regime
    return regime


def build_regime(
    name: str,
    cfg: TreatConfig,
    model: torch.nn.Module,
    training: TrainingConfig,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    rater: Rater | None = None,
    probe: tuple[ProbeScore, str] | None = None,
) -> tuple[Updater, LossFn]:
    """Updater and loss of regime `name` with cfg's settings; build it on the starting model, before train() resumes anything."""
    regime = REGIMES[name]
    settings = cfg.settings(name)
    if regime.wants_rater(settings) and rater is None:
        raise ValueError(f"regime {name!r} with reward feedback needs a rater (e.g. task.rater())")
    if regime.needs_probe and probe is None:
        raise ValueError(f"regime {name!r} needs probe=(probe_score, hook name)")
    return regime.build(model, settings, Setup(training, seed, torch.device(device), rater, probe))


def _sft(model: torch.nn.Module, settings: None, setup: Setup) -> tuple[Updater, LossFn]:
    return Backprop(model, setup.training, setup.device), Supervised()


def _rl(model: torch.nn.Module, settings: RLConfig, setup: Setup) -> tuple[Updater, LossFn]:
    updater = Reinforce(model, setup.training, settings, setup.rater, seed=setup.seed, device=setup.device)
    return updater, Reward(setup.rater, settings.temperature)


def _es(model: torch.nn.Module, settings: ESConfig, setup: Setup) -> tuple[Updater, LossFn]:
    feedback = Supervised() if settings.feedback == "supervised" else Reward(setup.rater, settings.temperature)
    return EvolutionStrategies(model, settings, feedback, seed=setup.seed), feedback


def _zo(model: torch.nn.Module, settings: ZOConfig, setup: Setup) -> tuple[Updater, LossFn]:
    return ZerothOrder(model, settings, seed=setup.seed), Supervised()


def _probe_penalty(model: torch.nn.Module, settings: ProbePenaltyConfig, setup: Setup) -> tuple[Updater, LossFn]:
    probe_score, hook = setup.probe
    return Backprop(model, setup.training, setup.device), ProbePenalty(probe_score, hook, settings.weight)


# Registration order is the default order of treat.regimes.
register_regime("sft", _sft, sees_gradients=True)
register_regime("rl", _rl, sees_gradients=True, settings=RLConfig, uses_rater=True)
register_regime("es", _es, sees_gradients=False, settings=ESConfig, uses_rater=True)
register_regime("zo", _zo, sees_gradients=False, settings=ZOConfig)
register_regime("probe_penalty", _probe_penalty, sees_gradients=True, settings=ProbePenaltyConfig, needs_probe=True)
register_regime("es_plain", _es, sees_gradients=False, settings=PlainESConfig, uses_rater=True)
