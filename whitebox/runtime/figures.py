"""Every PNG whitebox draws goes through here: a headless matplotlib figure, written atomically, then closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from whitebox.runtime.artifacts import atomic_write


def subplots(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """matplotlib.pyplot.subplots on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_figure(fig: Any, out: str | Path, dpi: int = 120) -> Path:
    """Write `fig` as PNG to `out` atomically and close it."""
    import matplotlib.pyplot as plt

    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    plt.close(fig)
    return Path(out)
