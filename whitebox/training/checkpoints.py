"""Resumable training state: model weights, updater state and RNG, one atomic directory per step."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from whitebox.distributed import main_only
from whitebox.models import state_tensors
from whitebox.artifacts import ArtifactError, read_json, sha256_file, write_json

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
    tmp.mkdir(parents=True)
    try:
        save_file(state_tensors(model), str(tmp / FILES[0]))
        torch.save({"updater": updater.state_dict(), "rng": _rng_state()}, tmp / FILES[1])
        write_json(tmp / "checkpoint.json", {
            "format_version": FORMAT_VERSION,
            "step": step,
            "spent": dict(spent or {}),
            "sha256": {name: sha256_file(tmp / name) for name in FILES},
        })
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old)


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
    meta = read_json(path / "checkpoint.json")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path / 'checkpoint.json'}: unsupported format_version {meta.get('format_version')!r}")
    for name in FILES:
        file = path / name
        if not file.is_file():
            raise ArtifactError(f"{file}: file not found")
        if sha256_file(file) != meta["sha256"][name]:
            raise ArtifactError(f"{file}: content hash differs from checkpoint.json; the checkpoint is corrupt")
    try:
        model.load_state_dict(load_file(str(path / FILES[0])), strict=True)
    except SafetensorError as err:
        raise ArtifactError(f"{path / FILES[0]}: unreadable ({err})") from None
    state = torch.load(path / FILES[1], weights_only=True)
    updater.load_state_dict(state["updater"])
    _set_rng_state(state["rng"])
    return int(meta["step"])


def checkpoint_spent(path: str | Path) -> dict[str, int]:
    """The budget spent up to a checkpoint (empty for checkpoints written before budgets existed)."""
    return {k: int(v) for k, v in read_json(Path(path) / "checkpoint.json").get("spent", {}).items()}


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
