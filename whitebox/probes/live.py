"""Score a hook's activations live, during any forward pass or generation, inside a scoped hooks context."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from whitebox.capture import canonical_hook, residual_hooks
from whitebox.runtime.artifacts import ProbeError


@dataclass
class LiveScores:
    """Scores recorded while attached: one entry per forward pass that ran the hook.

    With position "last" (or an index) an entry is [batch]; with "all" it is [batch, pos]. During
    cached generation each step's pass sees only the new tokens, so "last" scores each new token.
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
    record = _recorder(live, d_model, position, score, where, detach)

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
    record = _recorder(live, d_model, position, score, where, detach)

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


def _check_live(position: Any, where: str) -> None:
    """A position rule that needs a mask has none to read during a live pass."""
    if position == "mask":
        raise ProbeError(f"{where}: position rule 'mask' cannot be applied live; attach with positions='all' or 'last'")


def _recorder(
    live: LiveScores, d_model: int, position: Any, score: Callable[[torch.Tensor], torch.Tensor], where: str, detach: bool,
) -> Callable[[torch.Tensor], None]:
    """What each pass does with the activation: check its width, select `position`, score it into `live`."""

    def record(act: torch.Tensor) -> None:
        if act.shape[-1] != d_model:
            raise ProbeError(f"{where}: field 'd_model' is {d_model} but {live.hook} has width {act.shape[-1]} on this model")
        x = _select(act, position)  # batch d, or batch pos d
        if x is not None:
            s = score(x.detach() if detach else x)
            live.scores.append(s.detach() if detach else s)

    return record


def _select(act: torch.Tensor, position: Any) -> torch.Tensor | None:
    """The activation rows a position rule reads from one pass; None when an index is out of range."""
    if position == "all":
        return act
    if position == "last":
        return act[:, -1]
    if position == "mean":
        return act.mean(1)  # every position of an unpadded pass
    seq = act.shape[1]
    return act[:, position] if -seq <= position < seq else None
