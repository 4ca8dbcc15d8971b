"""whitebox: plant hidden behaviours in small transformers, locate them, and test whether training removes them."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_config", "parse_config", "resume", "run"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `whitebox --help` answers without importing torch. The runner registers every
    # built-in task, regime, probe kind and experiment, so configs loaded through here know them all.
    if name in __all__[1:]:
        from whitebox import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'whitebox' has no attribute {name!r}")
