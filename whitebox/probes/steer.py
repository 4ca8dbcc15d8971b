"""A probe's direction as a causal test: add it to (or remove it from) the activations it reads, and watch behaviour.

A linear probe scores ((x - mean) / std) . w + b, so the direction that raises its score fastest
in raw activation space is w / std. `steer` adds `multiplier` times that unit direction at the
probe's hook during any forward pass or generation (activation addition), or projects it out
(direction ablation); `steering_sweep` measures a behaviour at several multipliers. If the probe
reads something the model uses, behaviour moves with the multiplier; if it moves nothing, the
probe found information the model does not act on. `steer` works on a bridge (through the
probe's hook) and on a plain Hugging Face model (through the module the probe records).
`steering_vector_kwargs` gives the direction in the steering-vectors library's format
(`SteeringVector(**kwargs)`); that library pins transformers < 5, so it cannot be installed beside
this stack and is not a dependency.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Callable, Iterator, Literal, Sequence

import torch

from whitebox.probes.probe import Probe
from whitebox.runtime.artifacts import ProbeError

Mode = Literal["add", "ablate"]


def direction(probe: Probe) -> torch.Tensor:
    """The unit vector [d_model] in raw activation space along which the probe's score rises fastest."""
    raw = probe.weight.double() / probe.std.double()
    return (raw / raw.norm()).float()


@contextlib.contextmanager
def steer(
    model: torch.nn.Module, probe: Probe, multiplier: float = 1.0, *, mode: Mode = "add", positions: Literal["all", "last"] = "all"
) -> Iterator[torch.nn.Module]:
    """Within the block, the probe's hook carries its direction times `multiplier` (add) or none of it (ablate)."""
    unit = direction(probe)

    def edit(act: torch.Tensor) -> torch.Tensor:
        v = unit.to(act.device, act.dtype)
        rows = act if positions == "all" else act[:, -1:]
        changed = rows + multiplier * v if mode == "add" else rows - (rows @ v)[..., None] * v
        return changed if positions == "all" else torch.cat([act[:, :-1], changed], dim=1)

    if hasattr(model, "hooks"):
        with model.hooks(fwd_hooks=[(probe.hook, lambda act, hook: edit(act))]):
            yield model
        return
    with _on_hf_module(model, probe, edit):
        yield model


@contextlib.contextmanager
def _on_hf_module(model: torch.nn.Module, probe: Probe, edit: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Apply `edit` to the input or output of the Hugging Face module the probe's hook is."""
    location = probe.hf_location
    if location is None:
        raise ProbeError(f"probe at {probe.hook}: records no Hugging Face module (fitted on a model built from config); "
                         "steer a TransformerBridge")
    module = model.get_submodule(location["module"])

    def output_hook(_module: Any, _args: Any, out: Any) -> Any:
        return (edit(out[0]), *out[1:]) if isinstance(out, tuple) else edit(out)

    def input_hook(_module: Any, args: Any, kwargs: Any) -> Any:
        if args:
            return (edit(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": edit(kwargs["hidden_states"])}

    handle = (module.register_forward_pre_hook(input_hook, with_kwargs=True) if location["io"] == "input"
              else module.register_forward_hook(output_hook))
    try:
        yield
    finally:
        handle.remove()


def steering_sweep(
    model: torch.nn.Module,
    probe: Probe,
    multipliers: Sequence[float],
    measure: Callable[[torch.nn.Module], dict[str, float]],
    *,
    positions: Literal["all", "last"] = "all",
) -> list[dict[str, float]]:
    """`measure(model)` with the direction added at each multiplier (0 is the unsteered model), and ablated."""
    rows = []
    for multiplier in multipliers:
        with steer(model, probe, multiplier, positions=positions):
            rows.append({"multiplier": float(multiplier), **measure(model)})
    with steer(model, probe, mode="ablate", positions=positions):
        rows.append({"multiplier": float("nan"), "ablated": 1.0, **measure(model)})
    return rows


def steering_vector_kwargs(probe: Probe, scale: float = 1.0) -> dict[str, Any]:
    """The probe's direction as steering_vectors.SteeringVector(**kwargs): the decoder block whose output it reads."""
    block = re.fullmatch(r"blocks\.(\d+)\.hook_out", probe.hook)
    if block is None or (probe.hf_location or {}).get("io") != "output":
        raise ProbeError(f"probe at {probe.hook}: only a probe on a block's output (blocks.L.hook_out) of a Hugging Face "
                         "model maps to a steering_vectors decoder_block layer")
    return {"layer_activations": {int(block.group(1)): scale * direction(probe)}, "layer_type": "decoder_block"}
