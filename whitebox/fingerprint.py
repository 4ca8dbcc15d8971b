"""What identifies a model: the fingerprint saved models are checked against, and the identity probes record."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import torch

from whitebox.config.schema import PRETRAINED_KEYS
from whitebox.hf_map import identity_state
from whitebox.runtime.artifacts import sha256_json

if TYPE_CHECKING:
    from whitebox.config import ModelConfig

ARCH_NAMES = {"TransformerLensNative": "native", "GPT2LMHeadModel": "gpt2", "LlamaForCausalLM": "llama"}  # whitebox arch names


def fingerprint(model: torch.nn.Module, cfg: ModelConfig) -> dict[str, Any]:
    """Architecture, the config's dims (or checkpoint name) and parameter shapes: models load each other's weights iff equal."""
    return fingerprint_of(architecture(model, cfg), cfg, {name: list(t.shape) for name, t in model.state_dict().items()})


def fingerprint_of(arch: str, cfg: ModelConfig, params: dict[str, list[int]]) -> dict[str, Any]:
    """The fingerprint from its parts, so that a saved model's file can be checked before any model is built."""
    # a checkpoint's name says nothing of its weights (copies move, names get reused): the weights digest does;
    # how it was loaded (dtype, device_map) is not which model it is
    dims = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in PRETRAINED_KEYS}
    body = {"arch": arch, "dims": dims, "params": params}
    return {**body, "sha256": sha256_json(body)}


def architecture(model: torch.nn.Module, cfg: Any = None) -> str:
    """whitebox's arch name for a model built from config, else the architecture class (GPT2LMHeadModel, ...)."""
    if cfg is not None and getattr(cfg, "source", "from_config") == "from_config":
        return cfg.arch
    raw = getattr(getattr(model, "cfg", None), "architecture", None) or type(model).__name__
    return ARCH_NAMES.get(raw, raw) if cfg is None else raw


def weights_digest(model: torch.nn.Module, per_tensor: int = 1024) -> str:
    """sha256 over every tensor's name, shape and `per_tensor` evenly spaced values rounded to bfloat16: tells
    checkpoints apart (any retraining moves those values) at a cost that does not grow with the model's size, and
    gives one checkpoint one digest whatever dtype it was loaded in (transformers loads a bf16 checkpoint in bf16,
    a bridge in float32 unless told otherwise)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(identity_state(model).items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // per_tensor)
        sample = flat[::step][:per_tensor].to("cpu").to(torch.bfloat16).to(torch.float32).contiguous()
        digest.update(f"{name}|{list(tensor.shape)}|".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()


def model_identity(model: torch.nn.Module, cfg: Any = None) -> dict[str, Any]:
    """What a probe, detector or circuit records about the model it was fitted on; cfg (a ModelConfig) adds the full
    fingerprint, the checkpoint's name and its revision."""
    params = {name: list(t.shape) for name, t in sorted(identity_state(model).items())}
    return {
        "arch": architecture(model, cfg),
        "fingerprint": fingerprint(model, cfg)["sha256"] if cfg is not None else None,
        "params_sha256": sha256_json(params),
        "weights_sha256": weights_digest(model),
        "checkpoint": getattr(cfg, "name_or_path", None) or hf_name(model),
        "revision": getattr(cfg, "revision", None),
        "hf_config_sha256": hf_config_digest(model),
        "tokenizer_sha256": tokenizer_digest(getattr(model, "tokenizer", None)),
    }


# what a Hugging Face config holds that says how a model was loaded or is run, not which model it is
RUNTIME_CONFIG_KEYS = ("transformers_version", "dtype", "torch_dtype", "output_attentions", "output_hidden_states",
                       "return_dict", "use_cache", "torchscript")


def hf_config(model: torch.nn.Module) -> Any:
    """The Hugging Face config of a bridge or a plain HF model; None for a model built natively."""
    config = getattr(getattr(model, "original_model", None), "config", None) or getattr(model, "config", None)
    return config if hasattr(config, "to_dict") and hasattr(config, "model_type") else None  # not transformer-lens's own


def hf_name(model: torch.nn.Module) -> str | None:
    """Where a Hugging Face model was loaded from (its folder or hub id), so that a refusal can name it."""
    return getattr(hf_config(model), "name_or_path", None) or None


def hf_config_digest(model: torch.nn.Module) -> str | None:
    """sha256 of the Hugging Face config (a bridge's or a plain HF model's) without private and runtime keys; None
    for a model built natively."""
    config = hf_config(model)
    if config is None:
        return None
    kept = {k: v for k, v in config.to_dict().items() if not k.startswith("_") and k not in RUNTIME_CONFIG_KEYS}
    return sha256_json(json.loads(json.dumps(kept, default=str)))


def tokenizer_digest(tokenizer: Any) -> str | None:
    """sha256 of a tokenizer's vocabulary (token -> id, added tokens included); None without a tokenizer."""
    if tokenizer is None or not hasattr(tokenizer, "get_vocab"):
        return None
    return sha256_json(sorted(tokenizer.get_vocab().items()))
