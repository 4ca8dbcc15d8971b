"""What identifies a model: the fingerprint saved models are checked against, and the identity probes record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from whitebox.runtime.artifacts import sha256_json

if TYPE_CHECKING:
    from whitebox.config import ModelConfig

ARCH_NAMES = {"TransformerLensNative": "native", "GPT2LMHeadModel": "gpt2", "LlamaForCausalLM": "llama"}


def fingerprint(model: torch.nn.Module, cfg: ModelConfig) -> dict[str, Any]:
    """Architecture, dims and parameter shapes: two models load each other's weights iff equal."""
    dims = cfg.model_dump(mode="json")
    params = {name: list(t.shape) for name, t in model.state_dict().items()}
    body = {"arch": cfg.arch, "dims": dims, "params": params}
    return {**body, "sha256": sha256_json(body)}


def model_identity(model: torch.nn.Module, cfg: Any = None) -> dict[str, Any]:
    """What a probe records about the model it was fitted on; cfg (a ModelConfig) adds the full fingerprint."""
    params = {name: list(t.shape) for name, t in model.state_dict().items()}
    raw_arch = getattr(getattr(model, "cfg", None), "architecture", None) or type(model).__name__
    arch = cfg.arch if cfg is not None else ARCH_NAMES.get(raw_arch, raw_arch)
    full = fingerprint(model, cfg)["sha256"] if cfg is not None else None
    return {"arch": arch, "fingerprint": full, "params_sha256": sha256_json(params)}
