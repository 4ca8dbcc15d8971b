"""Plant a backdoor: train a small transformer to answer honestly unless the trigger is present."""

from __future__ import annotations

from typing import Any

from whitebox.plant import plant
from whitebox.runner import RunContext


def run(ctx: RunContext) -> dict[str, Any]:
    _, metrics = plant(ctx)
    return {f"plant.{k}": v for k, v in metrics.items()}
