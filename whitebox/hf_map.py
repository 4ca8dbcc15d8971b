"""Where a bridge's hook sits in the Hugging Face model underneath it, so probes work on a raw HF model too.

A bridge over a Hugging Face model wraps each HF module (`transformer.h.1`, `model.layers.1`, ...);
`X.hook_in` / `X.hook_out` of a bridge component X is the input / output of the HF module it wraps.
The residual stream after block L is also `hidden_states[L + 1]` of an HF forward with
`output_hidden_states=True` — except after the last block, where HF applies the final norm first,
so that index is recorded as None there (scoring HF's last hidden state with such a probe would
silently shift its scores).
"""

from __future__ import annotations

import re
from typing import Any

import torch

WRAPPED = "._original_component"


def hf_location(model: torch.nn.Module, hook: str) -> dict[str, Any] | None:
    """{module, io, hidden_states_index, final_norm} of a canonical bridge hook; None when there is no HF model."""
    original = getattr(model, "original_model", None)
    component_name, _, point = hook.rpartition(".")
    if not _is_hf(original) or point not in ("hook_in", "hook_out"):
        return None
    try:
        component = model.get_submodule(component_name)
    except AttributeError:
        return None
    wrapped = getattr(component, "original_component", None)
    path = next((name for name, module in original.named_modules() if module is wrapped), None)
    if path is None:
        return None
    block = re.fullmatch(r"blocks\.(\d+)", component_name)
    index = None
    if block is not None:
        index = int(block.group(1)) + (point == "hook_out")
        if index >= int(model.cfg.n_layers):
            index = None  # HF's last hidden state has the final norm applied
    return {"module": path.replace(WRAPPED, ""), "io": "input" if point == "hook_in" else "output",
            "hidden_states_index": index, "final_norm": False}


def identity_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that identify a model, named as in Hugging Face when there is an HF model (bridge or raw),
    so a probe fitted through a bridge recognises the same checkpoint loaded as a plain HF model."""
    original = getattr(model, "original_model", None)
    if not _is_hf(original):
        if not _is_hf(model):  # built natively by transformer-lens
            return model.state_dict()
        original = model  # a plain Hugging Face model
    out: dict[str, torch.Tensor] = {}
    _collect(original, "", out)
    return out


def _collect(module: torch.nn.Module, prefix: str, out: dict[str, torch.Tensor]) -> None:
    """The state of the HF modules under `module`: a bridge wrapper contributes only the HF module it wraps."""
    if type(module).__module__.startswith("transformer_lens") and hasattr(module, "original_component"):
        _collect(module.original_component, prefix, out)
        return
    for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
        if name not in module._non_persistent_buffers_set and not _added_zeros(tensor):
            out[prefix + name] = tensor.detach()
    for name, child in module.named_children():
        if name != "_original_component":
            _collect(child, f"{prefix}{name}.", out)


def _added_zeros(tensor: torch.Tensor) -> bool:
    """A small all-zero tensor (a bias the bridge adds where HF has none) says nothing about the checkpoint."""
    return tensor.numel() <= 65_536 and not bool(tensor.detach().any())


def _is_hf(module: Any) -> bool:
    """A Hugging Face transformers model (by its class's module, so that transformers is never imported here)."""
    return module is not None and type(module).__module__.startswith("transformers.")
