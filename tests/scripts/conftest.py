"""Benchmark scripts run as a user runs them: a fresh process, tiny sizes, their JSON read back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_script(name: str, out: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict[str, Any]]:
    """`python scripts/<name> ARGS --out OUT`; it must exit 0; (the process, its JSON)."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc, json.loads(out.read_text())
