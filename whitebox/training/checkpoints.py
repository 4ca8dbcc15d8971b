"""Resumable training state: model weights, updater state and RNG, one atomic directory per step.

checkpoint.json names the run that wrote it (its id and the hash of its config) and carries a hash
of its own fields, so a checkpoint copied in from another run, or one whose step or budget was
edited, is refused instead of silently steering the resumed run.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import warnings
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

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
    sha256_json,
    write_failed,
    write_json,
)
from whitebox.runtime.distributed import main_only

FORMAT_VERSION = 2
FILES = ("model.safetensors", "trainer.pt")
HASHED = ("format_version", "step", "spent", "owner", "sha256")  # checkpoint.json's fields under its meta_sha256


class CheckpointDamaged(ArtifactError):
    """A checkpoint's files are cut, missing or no longer match their hashes: an older kept one may still serve."""


@dataclass(frozen=True)
class Owner:
    """The run whose checkpoints these are: its id, and every config hash it has run under (amendments add one)."""

    run: str
    configs: tuple[str, ...]


_OWNER: ContextVar[Owner | None] = ContextVar("checkpoint_owner", default=None)


@contextlib.contextmanager
def owned_by(owner: Owner | None) -> Iterator[None]:
    """Inside the block, checkpoints are written as `owner`'s and only `owner`'s are loaded (None: no check)."""
    token = _OWNER.set(owner)
    try:
        yield
    finally:
        _OWNER.reset(token)


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
        owner = _OWNER.get()
        meta = {
            "format_version": FORMAT_VERSION,
            "step": step,
            "spent": dict(spent or {}),
            "owner": None if owner is None else {"run": owner.run, "config": owner.configs[-1], "stage": _stage(directory)},
            "sha256": {name: sha256_file(tmp / name) for name in FILES},
        }
        write_json(tmp / "checkpoint.json", {**meta, "meta_sha256": sha256_json(meta)})
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


def resume_point(directory: str | Path, model: torch.nn.Module, updater: Any) -> tuple[int, dict[str, int]] | None:
    """Load the newest checkpoint that is intact, warning about each damaged newer one; (step, spent), or None.

    A checkpoint of another run, or an edited one, is refused (ArtifactError) rather than skipped.
    """
    kept = list_checkpoints(directory)
    for newest, path in enumerate(reversed(kept)):
        try:
            step = load_checkpoint(path, model, updater)
        except CheckpointDamaged as err:
            older = kept[-newest - 2] if newest + 1 < len(kept) else None
            if older is None:
                raise CheckpointDamaged(f"{err}; no older checkpoint is kept: delete {path} to start this stage "
                                        "again from its beginning") from None
            warnings.warn(f"{err}; resuming from the older {older.name} instead")
            continue
        return step, checkpoint_spent(path)
    return None


def load_checkpoint(path: str | Path, model: torch.nn.Module, updater: Any) -> int:
    """Restore model, updater and RNG from `path` after checking every file's hash and whose it is; return the step."""
    path = Path(path)
    meta = _read_meta(path / "checkpoint.json")
    for name in FILES:
        file = path / name
        if not file.is_file():
            raise CheckpointDamaged(f"{file}: file not found")
        if sha256_file(file) != meta["sha256"][name]:
            raise CheckpointDamaged(f"{file}: content hash differs from checkpoint.json; the checkpoint is corrupt")
    _check_owner(path, meta)
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


def _check_owner(path: Path, meta: dict[str, Any]) -> None:
    """Refuse a checkpoint written by another run, or by this run under a config it never ran with."""
    owner = _OWNER.get()
    theirs = meta.get("owner") if meta["format_version"] == FORMAT_VERSION else None  # format 1 named no owner
    if owner is None:
        return
    if theirs is None or theirs.get("run") != owner.run:
        who = "an unnamed run (an older whitebox)" if theirs is None else f"run {theirs.get('run')!r}"
        raise ArtifactError(f"{path}: field 'owner' says it was written by {who}, not by this run ({owner.run!r}); it "
                            f"was copied in from elsewhere: delete {path} and resume")
    if theirs.get("config") not in owner.configs:
        raise ArtifactError(f"{path}: field 'owner.config' is a config this run never ran with; it was copied in from "
                            f"another copy of the run: delete {path} and resume")
    if theirs["stage"] != _stage(path.parent):
        raise ArtifactError(f"{path}: field 'owner.stage' says it was written in {theirs['stage']}, not here; it was "
                            f"copied in from another stage of this run: delete {path} and resume")


def _stage(directory: Path) -> str:
    """A checkpoint directory's name inside its run (checkpoints/plant, sft-present/checkpoints): moving the run keeps it."""
    return "/".join(Path(directory).parts[-2:])


def _read_meta(path: Path) -> dict[str, Any]:
    """checkpoint.json with every field checked, so a damaged one fails here with its name."""
    try:
        meta = read_json(path)
    except ArtifactError as err:
        raise CheckpointDamaged(str(err)) from None
    if not isinstance(meta, dict):
        raise CheckpointDamaged(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format_version") not in (1, FORMAT_VERSION):
        raise ArtifactError(f"{path}: unsupported format_version {meta.get('format_version')!r}")
    _check_fields(path, meta)
    return meta


def _check_fields(path: Path, meta: dict[str, Any]) -> None:
    """Each field well-formed, the step the one the directory is named for, and the fields as their hash says."""
    hashes, step, spent = meta.get("sha256"), meta.get("step"), meta.get("spent", {})
    if not isinstance(hashes, dict) or not all(isinstance(hashes.get(name), str) for name in FILES):
        raise ArtifactError(f"{path}: field 'sha256' must give a hash for each of {', '.join(FILES)}")
    if type(step) is not int or step < 0:
        raise ArtifactError(f"{path}: field 'step' must be a whole number >= 0, got {step!r}")
    if not isinstance(spent, dict) or not all(type(v) is int and v >= 0 for v in spent.values()):
        raise ArtifactError(f"{path}: field 'spent' must map budget names to whole numbers >= 0")
    named = path.parent.name.removeprefix("step_")
    if named.isdigit() and int(named) != step:
        raise ArtifactError(f"{path}: field 'step' is {step} but the checkpoint is {path.parent.name}; checkpoint.json was "
                            f"edited: restore it, or delete {path.parent} to resume from the checkpoint before it")
    if meta["format_version"] == 1:
        return
    owner = meta.get("owner")
    complete = isinstance(owner, dict) and all(isinstance(owner.get(k), str) for k in ("run", "config", "stage"))
    if owner is not None and not complete:
        raise ArtifactError(f"{path}: field 'owner' must name the run and config that wrote it, got {owner!r}")
    if meta.get("meta_sha256") != sha256_json({k: meta.get(k) for k in HASHED}):
        raise ArtifactError(f"{path}: fields {', '.join(HASHED[1:4])} differ from what was written (meta_sha256); "
                            f"checkpoint.json was edited: restore it, or delete {path.parent} to resume from the one before")


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
