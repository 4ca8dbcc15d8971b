"""Pick a treatment regime by name: the matching (updater, loss_fn) pair for the training loop."""

from __future__ import annotations

import torch

from whitebox.config import TrainingConfig
from whitebox.training.backprop import Backprop
from whitebox.training.es import EvolutionStrategies
from whitebox.training.feedback import Rater, Reward, Supervised
from whitebox.training.loop import LossFn, Updater
from whitebox.training.probe_penalty import ProbePenalty, ProbeScore
from whitebox.config import Regime, TreatConfig
from whitebox.training.rl import Reinforce
from whitebox.training.zo import ZerothOrder


def build_regime(
    regime: Regime,
    cfg: TreatConfig,
    model: torch.nn.Module,
    training: TrainingConfig,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    rater: Rater | None = None,
    probe: tuple[ProbeScore, str] | None = None,
) -> tuple[Updater, LossFn]:
    """Updater and loss for `regime` with cfg's settings; build it on the starting model, before train() resumes anything.

    sft and probe_penalty use training's AdamW settings, and so does rl; es and zo carry their own.
    rl and reward-fed es need `rater`; probe_penalty needs `probe` = (probe_score, hook name).
    """
    if regime in ("rl", "es") and rater is None and not (regime == "es" and cfg.es.feedback == "supervised"):
        raise ValueError(f"regime {regime!r} with reward feedback needs a rater (e.g. match_rater())")
    if regime == "sft":
        return Backprop(model, training, torch.device(device)), Supervised()
    if regime == "rl":
        return Reinforce(model, training, cfg.rl, rater, seed=seed, device=device), Reward(rater, cfg.rl.temperature)
    if regime == "es":
        feedback = Supervised() if cfg.es.feedback == "supervised" else Reward(rater, cfg.es.temperature)
        return EvolutionStrategies(model, cfg.es, feedback, seed=seed), feedback
    if regime == "zo":
        return ZerothOrder(model, cfg.zo, seed=seed), Supervised()
    if probe is None:
        raise ValueError("regime 'probe_penalty' needs probe=(probe_score, hook name)")
    probe_score, hook = probe
    return Backprop(model, training, torch.device(device)), ProbePenalty(probe_score, hook, cfg.probe_penalty.weight)
