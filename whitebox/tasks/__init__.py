"""Task generators: each module gives a vocabulary, seeded datasets and an evaluation."""

from __future__ import annotations

import types

from whitebox.tasks import backdoor, flawed_rater, modular

TASKS: dict[str, types.ModuleType] = {"backdoor": backdoor, "modular": modular, "flawed_rater": flawed_rater}


def get_task(name: str) -> types.ModuleType:
    """The task module registered under `name` (config validation already restricts the names)."""
    return TASKS[name]
