"""A tiny planted model and a probe fitted on it, saved once per session: what the loader and edge tests damage.

tests/reliability/conftest.py provides the fixture to every reliability test (one build per session);
tests copy what they damage (`copy_of`) and never touch the originals.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import whitebox
from tests.conftest import TINY, one_thread
from whitebox.cli.main import main
from whitebox.config import parse_config
from whitebox.runtime.artifacts import seal

LOCATE = {"n_fit": 64, "n_test": 32}


@dataclass(frozen=True)
class Saved:
    config: Path  # the tiny config, as a YAML file
    model: Path  # models/planted of a tiny plant run
    probe: Path  # the probe of blocks.0.hook_out, fitted on that model


@pytest.fixture(scope="session")
def saved(tmp_path_factory) -> Saved:
    root = tmp_path_factory.mktemp("saved")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "locate": {**LOCATE, "hooks": ["blocks.0.hook_out"]}}))
    with one_thread():
        whitebox.run(parse_config(TINY), out=root / "run")
        model = root / "run" / "models" / "planted"
        assert main(["probe", "fit", str(config), "--set", f"locate.checkpoint={model}", "--out", str(root / "fit")]) == 0
    probes = [p.parent for p in (root / "fit" / "probes").rglob("probe.json")]
    assert len(probes) == 1, probes
    return Saved(config, model, probes[0])


def copy_of(directory: Path, tmp_path: Path) -> Path:
    """A fresh copy of a saved artifact's directory to damage."""
    return Path(shutil.copytree(directory, tmp_path / f"copy-{len(list(tmp_path.iterdir()))}"))


def edit_json(path: Path, change: Any, reseal: bool = True) -> None:
    """Apply change(data) to a JSON file in place; with reseal, recompute its content hash so deeper checks are reached."""
    data = json.loads(path.read_text())
    change(data)
    if reseal:
        data = seal({k: v for k, v in data.items() if k != "sha256"})
    path.write_text(json.dumps(data))
