"""What every run stands on: atomic checked files, locks, torchrun, the tracker, the run-directory layout."""
