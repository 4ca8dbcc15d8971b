"""Atomic writes and content hashes, so no reader ever sees a half-written file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from safetensors import SafetensorError

from whitebox.runtime.distributed import main_only

MAX_JSON_BYTES = 256 << 20  # a model.json with a million-token vocabulary is about 20 MB


class ArtifactError(Exception):
    """A file on disk is missing, corrupt or does not match what it must be loaded into."""


class ProbeError(ArtifactError):
    """A probe or detector artifact is corrupt, or does not fit the model or data it is used on."""


class WriteFailed(ArtifactError):
    """The disk refused a write (full, read-only, no permission); files written before are intact."""


def write_failed(path: str | Path, err: BaseException) -> WriteFailed:
    """The one-line error for a refused write, naming the file, the reason and the way on."""
    reason = getattr(err, "strerror", None) or one_line(err)
    return WriteFailed(f"{path}: cannot write ({reason}); earlier files are intact: free disk space or make the "
                       "directory writable")


def one_line(err: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (its type's name when it has none), cut at `limit` characters."""
    text = str(err).strip()
    return text.splitlines()[0][:limit] if text else type(err).__name__


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp_path)` then rename onto `path`; on failure the old file stays intact.

    A write the disk refuses (OSError: full, read-only, permissions) is raised as WriteFailed.
    Under torchrun only rank 0 writes, and every rank returns once the file is there.
    """
    path = Path(path)
    with main_only() as writer:
        if writer:
            _replace(path, write)
    return path


def _replace(path: Path, write: Callable[[Path], None]) -> None:
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide run files from the other users of a shared disk
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            with contextlib.suppress(OSError):
                Path(tmp).unlink(missing_ok=True)
        if refused_write(err):
            raise write_failed(path, err) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def refused_write(err: BaseException) -> bool:
    """Did the disk refuse a write? OSError from Python, an I/O SafetensorError from safetensors' Rust writer."""
    return isinstance(err, OSError) or (isinstance(err, SafetensorError) and "I/O error" in str(err))


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Parse a JSON file, naming the file when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    if (size := path.stat().st_size) > MAX_JSON_BYTES:
        raise ArtifactError(f"{path}: {size:,} bytes, more than any JSON file whitebox writes ({MAX_JSON_BYTES:,}); "
                            "it is not one of its files")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{path}: not valid JSON ({err}); the file is truncated or corrupt") from None
    except RecursionError:
        raise ArtifactError(f"{path}: JSON nested too deeply to read; the file is not one whitebox wrote") from None


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def now() -> str:
    """The time an artifact records (UTC, to the second)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_json(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def seal(body: dict[str, Any]) -> dict[str, Any]:
    """`body` as it will read back, plus `sha256` of it: so that an edit to any field of the file is refused."""
    plain = json.loads(json.dumps(body))  # tuples as lists, keys as strings
    return {**plain, "sha256": sha256_json(plain)}


def unsealed(data: dict[str, Any]) -> bool:
    """True when `data` (a sealed file's content) has no `sha256`, or one that differs from the hash of the rest."""
    return data.get("sha256") != sha256_json({k: v for k, v in data.items() if k != "sha256"})
