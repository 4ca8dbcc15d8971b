"""Run directories left by a real kill, for the tests that edit or damage them, and the check of a refusal."""

from __future__ import annotations

import copy
import importlib.util
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import TINY
from whitebox.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
PLANT_STEPS = TINY["training"]["steps"]
IN_SECOND_CELL = 2 * PLANT_STEPS + 32 + 16  # step 16 of es-present (plant, honest plant, sft-present done; es at step_0000012)


def fault_script() -> Any:
    """scripts/fault_injection.py as a module (its forked, killable `attempt`)."""
    if "fault_injection" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fault_injection", ROOT / "scripts" / "fault_injection.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["fault_injection"] = module
        spec.loader.exec_module(module)
    return sys.modules["fault_injection"]


def treat_config() -> dict[str, Any]:
    """The fault script's tiny treat experiment, shortened: plant 24 steps, sft-present 32, es-present 24, revivals 8."""
    cfg = copy.deepcopy(fault_script().CONFIG)
    cfg["treat"]["budget"], cfg["revive"]["steps"] = 3000, 8
    return cfg


def killed_run(work: Path, config: dict[str, Any], at_step: int | None) -> Path:
    """`whitebox run` of `config` in work/run, SIGKILLed at training step `at_step` (None: run to the end)."""
    work.mkdir(parents=True, exist_ok=True)
    path, run_dir = work / "config.yaml", work / "run"
    path.write_text(yaml.safe_dump(config))
    code = fault_script().attempt(["run", str(path), "--out", str(run_dir)], at_step, work / "ledger", work / "log",
                                  points=("step",))
    assert code == (0 if at_step is None else -signal.SIGKILL), (work / "log").read_text()[-2000:]
    return run_dir


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run_dir, out, symlinks=True)
    return out


def files(run_dir: Path) -> dict[str, bytes]:
    """Every file under the run directory and its bytes: what a refused command must leave as it was.

    run.lock is left out: the killed run's lock is stale, and the refused command takes it over and lets it go.
    """
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != "run.lock"}


def refused(capsys: Any, argv: list[str], *words: str, code: int = 2) -> str:
    """Run the CLI; it must exit `code` with one `whitebox:` line holding every word, and no traceback."""
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("whitebox:")]
    assert "Traceback" not in err and len(lines) == 1, err[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]
