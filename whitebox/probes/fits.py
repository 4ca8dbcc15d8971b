"""Whether a probe or detector fits the model it is applied to: the same model, a hook it has, a position it reads."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from whitebox.capture import canonical_hook
from whitebox.fingerprint import ARCH_NAMES, model_identity
from whitebox.runtime.artifacts import ProbeError, now


def check_model(saved: dict | None, model: torch.nn.Module, cfg: Any, allow_mismatch: bool, where: str,
                override: str = "pass allow_fingerprint_mismatch=True") -> str | None:
    """Refuse a model whose identity differs from the one the artifact was fitted on (`override`: how the caller's
    user allows it); when allowed, warn and return the message (for the caller to record); None when the model is the
    artifact's own."""
    if saved is None:
        return None  # fitted on raw arrays: only the width can be checked
    ours = model_identity(model, cfg)
    problems = []
    if ARCH_NAMES.get(saved["arch"], saved["arch"]) != ARCH_NAMES.get(ours["arch"], ours["arch"]):
        problems.append(f"arch {saved['arch']!r} vs this model's {ours['arch']!r}")
    if saved.get("fingerprint") and ours["fingerprint"]:
        if saved["fingerprint"] != ours["fingerprint"]:
            problems.append("model fingerprint differs (config or parameter shapes)")
    elif saved["params_sha256"] != ours["params_sha256"]:
        problems.append("parameter names or shapes differ")
    if not problems and saved.get("hf_config_sha256") and ours["hf_config_sha256"] not in (None, saved["hf_config_sha256"]):
        problems.append("the Hugging Face config differs")
    if not problems and saved.get("weights_sha256") and saved["weights_sha256"] != ours["weights_sha256"]:
        problems.append(f"other weights (fitted on {_named(saved)}, applied to {_named(ours)})")
    if not problems:
        return None
    message = f"{where}: fitted on a different model: {'; '.join(problems)}"
    if not allow_mismatch:
        raise ProbeError(f"{message}; {override} to use it anyway")
    warnings.warn(message, stacklevel=3)
    return message


def override_record(message: str, model: torch.nn.Module, cfg: Any) -> dict[str, Any]:
    """What an artifact keeps of one use on another model under allow_fingerprint_mismatch: the warning, that model."""
    return {"message": message, "model": model_identity(model, cfg), "when": now()}


def _named(identity: dict[str, Any]) -> str:
    """A checkpoint's name, or its weights digest when it was built from config."""
    name = identity.get("checkpoint")
    return f"{name!r} (weights {identity['weights_sha256'][:12]})" if name else f"weights {identity['weights_sha256'][:12]}"


def check_reads(artifact: Any, model: torch.nn.Module, where: str, length: int | None = None) -> None:
    """Refuse an artifact whose hook this model lacks, or whose position index lies outside inputs of `length`
    tokens (default: the model's context)."""
    if hasattr(model, "hook_dict"):
        try:
            canonical_hook(model, artifact.hook)
        except ValueError as err:
            raise ProbeError(f"{where}: field 'hook' names {err}; fit the probe on this model") from None
    check_position(artifact.position, length or int(getattr(getattr(model, "cfg", None), "n_ctx", 0) or 0), where)


def check_position(position: Any, length: int, where: str) -> None:
    """An index position must read a token of inputs `length` long (0: length unknown, not checked)."""
    if isinstance(position, int) and length and not -length <= position < length:
        raise ProbeError(f"{where}: field 'position' is {position} but inputs here are {length} tokens long "
                         f"(an index must be from {-length} to {length - 1})")
