"""The built-in experiments: short compositions of whitebox library calls, each registered by name on import.

Add one with a module that defines `run(ctx) -> summary` and calls
`whitebox.runtime.experiment.register_experiment(name, run, sections=...)`; a third-party package
can also publish it under the `whitebox.experiments` entry-point group (see docs/extending.md).
"""

from whitebox.experiments import (  # noqa: F401
    anomaly,
    circuit,
    flawed_rater,
    grokking,
    locate,
    plant,
    probe,
    suppression,
    treat,
)

__all__ = ["anomaly", "circuit", "flawed_rater", "grokking", "locate", "plant", "probe", "suppression", "treat"]
