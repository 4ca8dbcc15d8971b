"""One training loop with pluggable updaters (how to change the weights) and objectives (towards what).

Treatment regimes are registered by name in whitebox.training.regimes (`register_regime`).
"""

from whitebox.training.backprop import Backprop
from whitebox.training.es import ESConfig, EvolutionStrategies
from whitebox.training.feedback import Feedback, Reward, Supervised
from whitebox.training.loop import COST_KEYS, TrainingDiverged, Updater, batch_indices, train
from whitebox.training.objectives import supervised
from whitebox.training.probe_penalty import ProbePenalty, ProbePenaltyConfig
from whitebox.training.regimes import REGIMES, Regime, Setup, build_regime, register_regime
from whitebox.training.rl import Reinforce, RLConfig
from whitebox.training.zo import ZerothOrder, ZOConfig

__all__ = [
    "COST_KEYS", "REGIMES", "Backprop", "ESConfig", "EvolutionStrategies", "Feedback", "ProbePenalty",
    "ProbePenaltyConfig", "RLConfig", "Regime", "Reinforce", "Reward", "Setup", "Supervised", "TrainingDiverged",
    "Updater", "ZOConfig", "ZerothOrder", "batch_indices", "build_regime", "register_regime", "supervised", "train",
]
