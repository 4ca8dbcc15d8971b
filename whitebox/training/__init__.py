"""One training loop with pluggable updaters (how to change the weights) and objectives (towards what)."""

from whitebox.training.backprop import Backprop
from whitebox.training.loop import TrainingDiverged, Updater, batch_indices, train
from whitebox.training.objectives import supervised

__all__ = ["Backprop", "TrainingDiverged", "Updater", "batch_indices", "supervised", "train"]
