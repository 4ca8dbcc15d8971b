"""Regenerate the config reference in README.md from the pydantic schema."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from whitebox.config.reference import config_reference

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def render(text: str) -> str:
    return re.sub(f"{START}.*?{END}", lambda _: f"{START}\n{config_reference()}{END}", text, flags=re.S)


if __name__ == "__main__":
    text = README.read_text()
    new = render(text)
    if "--check" in sys.argv[1:]:
        sys.exit(0 if new == text else "README.md config reference is stale: run python scripts/update_readme.py")
    README.write_text(new)
