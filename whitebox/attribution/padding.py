"""Left-padded pairs in the attribution code: every forward sees its run's attention mask, and padding is never patched in.

transformer-lens's patching sweep and gradient cache call the model with tokens alone, so
`attending` hands the mask to every forward inside its block. Where the source run of a pair is
shorter than the base run, the source has no token at the base's first positions; a patch keeps
the base activation there (`keep_base`), so a component's effect is that of the positions both
runs have. Where the base is padding, nothing attends to it, so what is patched there is never read.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator
from unittest import mock

import torch

from whitebox import fast_path
from whitebox.tasks.pairs import ContrastPairs, Direction


@contextlib.contextmanager
def attending(model: torch.nn.Module, mask: torch.Tensor | None) -> Iterator[torch.nn.Module]:
    """Within the block every forward of `model` gets `attention_mask=mask` (None: left as it is)."""
    if mask is None:
        yield model
        return
    forward = model.forward

    def masked_forward(*args, **kwargs):
        kwargs.setdefault("attention_mask", mask)
        return forward(*args, **kwargs)

    with mock.patch.object(model, "forward", masked_forward):
        yield model


def hooked_logits(
    model: torch.nn.Module, tokens: torch.Tensor, mask: torch.Tensor | None, fwd_hooks: list[tuple[str, Callable]],
    fast: bool = True,
) -> torch.Tensor:
    """`model.run_with_hooks` on `tokens` seeing `mask`: through the fast path when there is no padding to mask and
    it reaches every hook (fast_path.run_with_hooks), through the bridge otherwise or with fast=False (for results
    compared with other bridge forwards: the two paths differ in rounding)."""
    if fast and (mask is None or bool(mask.all())):
        logits = fast_path.run_with_hooks(model, tokens, fwd_hooks)
        if logits is not None:
            return logits
    with attending(model, mask):
        return model.run_with_hooks(tokens, fwd_hooks=fwd_hooks)


def keep_base(source: torch.Tensor, base: torch.Tensor, source_mask: torch.Tensor | None) -> torch.Tensor:
    """`source` [batch pos ...] where the source run has a token, `base` where it is padding."""
    if source_mask is None:
        return source
    real = source_mask.bool().view(*source_mask.shape, *[1] * (source.ndim - 2))  # batch pos 1 ...
    return torch.where(real, source, base)


def source_activations(
    model: torch.nn.Module, pairs: ContrastPairs, direction: Direction, names: Iterable[str], fast: bool = True
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The source run's logits and its activations at `names`, the base run's where the source is padding (no grad);
    `fast` as in hooked_logits."""
    names = set(names)
    base, source = pairs.runs(direction)
    base_mask, source_mask = pairs.masks(direction)
    logits, acts = activations_at(model, source, source_mask, names, fast)
    if source_mask is None:
        return logits, acts
    _, base_cache = activations_at(model, base, base_mask, names, fast)
    return logits, {name: keep_base(act, base_cache[name], source_mask) for name, act in acts.items()}


def activations_at(
    model: torch.nn.Module, tokens: torch.Tensor, mask: torch.Tensor | None, names: Iterable[str], fast: bool = True
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits and the activations at `names` (as asked for, aliases included), without gradients; `fast` as in
    hooked_logits."""
    cache: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable:
        def hook(act: torch.Tensor, hook: object) -> None:
            cache[name] = act.detach()
        return hook

    with torch.no_grad():
        logits = hooked_logits(model, tokens, mask, [(name, keep(name)) for name in sorted(names)], fast)
    return logits, cache
