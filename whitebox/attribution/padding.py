"""Left-padded pairs in the attribution code: every forward sees its run's attention mask, and padding is never patched in.

transformer-lens's patching sweep and gradient cache call the model with tokens alone, so
`attending` hands the mask to every forward inside its block. Where the source run of a pair is
shorter than the base run, the source has no token at the base's first positions; a patch keeps
the base activation there (`keep_base`), so a component's effect is that of the positions both
runs have. Where the base is padding, nothing attends to it, so what is patched there is never read.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator
from unittest import mock

import torch

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


def keep_base(source: torch.Tensor, base: torch.Tensor, source_mask: torch.Tensor | None) -> torch.Tensor:
    """`source` [batch pos ...] where the source run has a token, `base` where it is padding."""
    if source_mask is None:
        return source
    real = source_mask.bool().view(*source_mask.shape, *[1] * (source.ndim - 2))  # batch pos 1 ...
    return torch.where(real, source, base)


def source_activations(
    model: torch.nn.Module, pairs: ContrastPairs, direction: Direction, names: Iterable[str]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The source run's logits and its activations at `names`, the base run's where the source is padding (no grad)."""
    names = set(names)
    base, source = pairs.runs(direction)
    base_mask, source_mask = pairs.masks(direction)
    with torch.no_grad(), attending(model, source_mask):
        logits, cache = model.run_with_cache(source, names_filter=lambda name: name in names)
    acts = {name: cache[name] for name in names}
    if source_mask is None:
        return logits, acts
    with torch.no_grad(), attending(model, base_mask):
        _, base_cache = model.run_with_cache(base, names_filter=lambda name: name in names)
    return logits, {name: keep_base(act, base_cache[name], source_mask) for name, act in acts.items()}
