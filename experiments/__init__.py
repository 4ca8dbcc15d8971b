"""Experiment pipelines: short compositions of whitebox library calls, registered as entry points."""
