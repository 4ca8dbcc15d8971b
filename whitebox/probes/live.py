"""Score a hook's activations live, during any forward pass or generation, inside a scoped hooks context.

A pass called with `attention_mask=` (a padded batch, or generation from one) is read at its real
tokens: "last" is each row's last real token and "mean" the average of its real tokens, on the
left or on the right, so a row scores what it scores alone.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from einops import einsum

from whitebox.capture import canonical_hook, residual_hooks
from whitebox.runtime.artifacts import ProbeError


@dataclass
class LiveScores:
    """Scores recorded while attached: one entry per forward pass that ran the hook.

    With position "last" (or an index) an entry is [batch]; with "all" it is [batch, pos], padding
    included. During cached generation each step's pass sees only the new tokens, so "last" scores
    each new token.
    """

    hook: str
    scores: list[torch.Tensor] = field(default_factory=list)

    @property
    def last(self) -> torch.Tensor:
        """The most recent entry."""
        if not self.scores:
            raise ProbeError(f"{self.hook}: no forward pass has run this hook since attach")
        return self.scores[-1]


@contextmanager
def attach_scorer(
    model: torch.nn.Module,
    hook: str,
    d_model: int,
    position: Any,
    score: Callable[[torch.Tensor], torch.Tensor],
    where: str,
    detach: bool = True,
) -> Iterator[LiveScores]:
    """Run `score` on `hook`'s activation at `position` in every forward pass while the context is open."""
    _check_live(position, where)
    try:
        name = canonical_hook(model, hook)
    except ValueError as err:
        raise ProbeError(f"{where}: hook {err}") from None
    width = int(getattr(model.cfg, "d_model", d_model))
    if name in residual_hooks(model) and width != d_model:
        raise ProbeError(f"{where}: field 'd_model' is {d_model} but the model's residual width at {name} is {width}")
    live = LiveScores(name)
    with _attention_mask(model) as current:
        record = _recorder(live, d_model, position, score, where, detach, current)

        def read(act: torch.Tensor, hook: Any) -> torch.Tensor:
            record(act)
            return act

        with model.hooks(fwd_hooks=[(name, read)]):
            yield live


@contextmanager
def attach_module(
    model: torch.nn.Module,
    location: dict[str, Any],
    d_model: int,
    position: Any,
    score: Callable[[torch.Tensor], torch.Tensor],
    where: str,
    detach: bool = True,
) -> Iterator[LiveScores]:
    """The same live scoring on a plain Hugging Face model, at the input or output of the module the hook is."""
    _check_live(position, where)
    try:
        module = model.get_submodule(location["module"])
    except AttributeError:
        raise ProbeError(f"{where}: this model has no module {location['module']!r}; it is not the architecture the "
                         "probe was fitted on") from None
    live = LiveScores(location["module"])
    with _attention_mask(model) as current:
        record = _recorder(live, d_model, position, score, where, detach, current)

        def read(act: Any) -> None:
            record(act[0] if isinstance(act, (tuple, list)) else act)  # a decoder layer returns (hidden, ...)

        if location["io"] == "input":
            handle = module.register_forward_pre_hook(
                lambda _m, args, kwargs: read(args[0] if args else kwargs["hidden_states"]), with_kwargs=True)
        else:
            handle = module.register_forward_hook(lambda _m, _args, out: read(out))
        try:
            yield live
        finally:
            handle.remove()


@contextmanager
def _attention_mask(model: torch.nn.Module) -> Iterator[dict[str, torch.Tensor | None]]:
    """{"mask": the attention_mask keyword of the model's pass in progress}; None between passes or without one."""
    current: dict[str, torch.Tensor | None] = {"mask": None}

    def start(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        current["mask"] = kwargs.get("attention_mask")

    def end(*_: Any) -> None:
        current["mask"] = None

    handles = [model.register_forward_pre_hook(start, with_kwargs=True), model.register_forward_hook(end)]
    try:
        yield current
    finally:
        for handle in handles:
            handle.remove()


def _check_live(position: Any, where: str) -> None:
    """A position rule that needs a mask or the texts has none to read during a live pass."""
    if position == "mask" or isinstance(position, dict):
        rule = "mask" if position == "mask" else "match"
        raise ProbeError(f"{where}: position rule {rule!r} cannot be applied live; attach with positions='all' or 'last'")


def _recorder(
    live: LiveScores, d_model: int, position: Any, score: Callable[[torch.Tensor], torch.Tensor], where: str, detach: bool,
    current: dict[str, torch.Tensor | None],
) -> Callable[[torch.Tensor], None]:
    """What each pass does with the activation: check its width, select `position`, score it into `live`."""

    def record(act: torch.Tensor) -> None:
        if act.shape[-1] != d_model:
            raise ProbeError(f"{where}: field 'd_model' is {d_model} but {live.hook} has width {act.shape[-1]} on this model")
        x = _select(act, position, current["mask"])  # batch d, or batch pos d
        if x is not None:
            s = score(x.detach() if detach else x)
            live.scores.append(s.detach() if detach else s)

    return record


def _select(act: torch.Tensor, position: Any, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """The activation rows a position rule reads from one pass; None when an index is out of range."""
    seq = act.shape[1]
    if position == "all":
        return act
    real = None if attention_mask is None else attention_mask[:, -seq:].to(act.device, torch.bool)  # batch pos
    if position == "last":
        if real is None:
            return act[:, -1]
        last = seq - 1 - real.flip(1).int().argmax(1)  # batch: the last real token of each row
        return act[torch.arange(act.shape[0], device=act.device), last]
    if position == "mean":
        if real is None:
            return act.mean(1)
        weights = (real / real.sum(1, keepdim=True)).to(act.dtype)  # batch pos
        return einsum(act, weights, "batch pos d, batch pos -> batch d")
    return act[:, position] if -seq <= position < seq else None
