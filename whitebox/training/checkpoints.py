"""Resumable training state: model weights, updater state and RNG, one atomic directory per step."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from whitebox.models import state_tensors
from whitebox.runtime.artifacts import (
    ArtifactError,
    one_line,
    read_json,
    refused_write,
    sha256_file,
    write_failed,
    write_json,
)
from whitebox.runtime.distributed import main_only

FORMAT_VERSION = 1
FILES = ("model.safetensors", "trainer.pt")


def save_checkpoint(
    directory: str | Path, step: int, model: torch.nn.Module, updater: Any, keep: int, spent: dict[str, int] | None = None
) -> Path:
    """Write step_<step>/ atomically (all files or none), then keep only the newest `keep`.

    `spent` is the loop's budget so far (forward-pass equivalents, examples), kept in checkpoint.json.
    """
    directory = Path(directory)
    final = directory / f"step_{step:07d}"
    with main_only() as writer:  # under torchrun rank 0 writes and every rank waits for it
        if writer:
            _write(directory, final, step, model, updater, keep, spent)
    return final


def _write(
    directory: Path, final: Path, step: int, model: torch.nn.Module, updater: Any, keep: int, spent: dict[str, int] | None
) -> None:
    tmp = directory / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        save_file(state_tensors(model), str(tmp / FILES[0]))
        trainer = io.BytesIO()  # serialised in memory, so a failure writing the file is told apart from one pickling
        torch.save({"updater": updater.state_dict(), "rng": _rng_state()}, trainer)
        (tmp / FILES[1]).write_bytes(trainer.getbuffer())
        write_json(tmp / "checkpoint.json", {
            "format_version": FORMAT_VERSION,
            "step": step,
            "spent": dict(spent or {}),
            "sha256": {name: sha256_file(tmp / name) for name in FILES},
        })
        if final.exists():
            _discard(final)
        os.replace(tmp, final)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if refused_write(err):
            raise write_failed(final, err) from None
        raise
    for old in list_checkpoints(directory)[:-keep]:
        _discard(old)


def _discard(path: Path) -> None:
    """Rename a checkpoint out of list_checkpoints' sight, then delete it: a kill mid-delete leaves no half checkpoint."""
    gone = path.with_name(f".{path.name}.old")
    shutil.rmtree(gone, ignore_errors=True)
    os.replace(path, gone)
    shutil.rmtree(gone)


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (unfinished temporaries are ignored)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    done = [p for p in directory.glob("step_*") if (p / "checkpoint.json").is_file()]
    return sorted(done, key=lambda p: int(p.name.removeprefix("step_")))


def load_checkpoint(path: str | Path, model: torch.nn.Module, updater: Any) -> int:
    """Restore model, updater and RNG from `path` after checking every file's hash; return the step."""
    path = Path(path)
    meta = _read_meta(path / "checkpoint.json")
    for name in FILES:
        file = path / name
        if not file.is_file():
            raise ArtifactError(f"{file}: file not found")
        if sha256_file(file) != meta["sha256"][name]:
            raise ArtifactError(f"{file}: content hash differs from checkpoint.json; the checkpoint is corrupt")
    try:
        model.load_state_dict(load_file(str(path / FILES[0])), strict=True)
    except (SafetensorError, RuntimeError, ValueError, OSError) as err:
        raise ArtifactError(f"{path / FILES[0]}: does not load into this model ({one_line(err, 200)})") from None
    try:
        state = torch.load(path / FILES[1], weights_only=True)  # tensors and containers only: nothing is unpickled
        updater.load_state_dict(state["updater"])
        _set_rng_state(state["rng"])
    except Exception as err:  # noqa: BLE001 - whatever a hash-valid but foreign file does, it is not this run's state
        raise ArtifactError(f"{path / FILES[1]}: not this run's trainer state ({one_line(err, 200)})") from None
    return meta["step"]


def _read_meta(path: Path) -> dict[str, Any]:
    """checkpoint.json with every field checked, so a damaged one fails here with its name."""
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: unsupported format_version {meta.get('format_version')!r}")
    hashes, step, spent = meta.get("sha256"), meta.get("step"), meta.get("spent", {})
    if not isinstance(hashes, dict) or not all(isinstance(hashes.get(name), str) for name in FILES):
        raise ArtifactError(f"{path}: field 'sha256' must give a hash for each of {', '.join(FILES)}")
    if type(step) is not int or step < 0:
        raise ArtifactError(f"{path}: field 'step' must be a whole number >= 0, got {step!r}")
    if not isinstance(spent, dict) or not all(type(v) is int for v in spent.values()):
        raise ArtifactError(f"{path}: field 'spent' must map budget names to whole numbers")
    return meta


def checkpoint_spent(path: str | Path) -> dict[str, int]:
    """The budget spent up to a checkpoint (empty for checkpoints written before budgets existed)."""
    return {k: int(v) for k, v in _read_meta(Path(path) / "checkpoint.json").get("spent", {}).items()}


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
