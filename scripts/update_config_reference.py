"""Regenerate the config reference in docs/config.md from the pydantic schema."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import whitebox.runner  # noqa: F401  (registers every built-in task, regime and probe kind)
from whitebox.config.reference import config_reference

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "config.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def render(text: str) -> str:
    return re.sub(f"{START}.*?{END}", lambda _: f"{START}\n{config_reference()}{END}", text, flags=re.S)


if __name__ == "__main__":
    text = REFERENCE.read_text()
    new = render(text)
    if "--check" in sys.argv[1:]:
        sys.exit(0 if new == text else "docs/config.md config reference is stale: run python scripts/update_config_reference.py")
    REFERENCE.write_text(new)
