"""whitebox: plant hidden behaviours in small transformers, locate them, and test whether training removes them."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_config", "resume", "run"]


def __getattr__(name: str) -> Any:
    # Lazy: `whitebox --help` and config errors answer without importing torch.
    if name in ("run", "resume"):
        from whitebox import runner

        return getattr(runner, name)
    if name == "load_config":
        from whitebox.config import load_config

        return load_config
    raise AttributeError(f"module 'whitebox' has no attribute {name!r}")
