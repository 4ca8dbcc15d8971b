"""One training loop with pluggable updaters (how to change the weights) and objectives (towards what)."""

from whitebox.training.backprop import Backprop
from whitebox.training.es import EvolutionStrategies
from whitebox.training.feedback import Feedback, Rater, Reward, Supervised, match_rater
from whitebox.training.loop import COST_KEYS, TrainingDiverged, Updater, batch_indices, train
from whitebox.training.objectives import supervised
from whitebox.training.probe_penalty import ProbePenalty
from whitebox.config import ESConfig, ProbePenaltyConfig, RLConfig, TreatConfig, ZOConfig
from whitebox.training.regimes import build_regime
from whitebox.training.rl import Reinforce
from whitebox.training.zo import ZerothOrder

__all__ = [
    "COST_KEYS", "Backprop", "ESConfig", "EvolutionStrategies", "Feedback", "ProbePenalty", "ProbePenaltyConfig",
    "RLConfig", "Rater", "Reinforce", "Reward", "Supervised", "TrainingDiverged", "TreatConfig", "Updater", "ZOConfig",
    "ZerothOrder", "batch_indices", "build_regime", "match_rater", "supervised", "train",
]
