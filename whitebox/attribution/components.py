"""Named model components (heads, MLPs, neurons, residual positions) and the hook activations they own.

A component is a slice of one hook activation. Its id (`L0.H1`, `L1.MLP`, `L1.MLP.N7`, `L2.RESID.P5`)
is what scores, plots and circuit artifacts are keyed by; `hook` is the transformer-lens alias
the patching helpers address, and `canonical_hook` the name a bridge resolves it to. A head, MLP
or neuron may be narrowed to one token position (`L0.H3.P2`, `L1.MLP.P11`, `L0.MLP.N7.P2`): a head
can read the trigger at one position and do the honest task at another. Positions index the pairs'
batch; pairs of unequal lengths are left-padded (whitebox.tasks.pairs), so position p is
`seq_len - 1 - p` tokens before the answer in every pair.

Per-head work happens at `blocks.L.attn.hook_z` (the value-weighted head outputs before W_O,
[batch, pos, head, d_head]); it exists on native and HF-backed bridges alike, unlike
`attn.hook_result`, which needs `use_attn_result` and HF weights.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Literal

import torch

Kind = Literal["head", "mlp", "neuron", "resid"]
UNIT_KINDS: tuple[Kind, ...] = ("head", "mlp")  # what a circuit is made of
_ID = re.compile(r"^L(\d+)\.(?:(?:H(\d+)|MLP(?:\.N(\d+))?)(?:\.P(\d+))?|RESID\.P(\d+))$")


@dataclass(frozen=True, order=True)
class Component:
    """One head, MLP layer, MLP neuron, or residual-stream position.

    `resid` at layer l < n_layers is the input of block l (`hook_resid_pre`); layer == n_layers is
    the output of the last block (`hook_resid_post`), so the residual stream has n_layers + 1 rows.
    """

    kind: Kind
    layer: int
    index: int | None = None  # head, neuron or position; None for a whole MLP
    pos: int | None = None  # a head, MLP or neuron at this token position only; None: at every position

    def __post_init__(self) -> None:
        assert self.kind in ("head", "mlp", "neuron", "resid"), self.kind
        assert (self.index is None) == (self.kind == "mlp"), f"{self.kind} component needs index iff not mlp"
        assert self.pos is None or self.kind != "resid", "a residual row is already one position"

    @property
    def id(self) -> str:
        at = "" if self.pos is None else f".P{self.pos}"
        return {
            "head": f"L{self.layer}.H{self.index}{at}",
            "mlp": f"L{self.layer}.MLP{at}",
            "neuron": f"L{self.layer}.MLP.N{self.index}{at}",
            "resid": f"L{self.layer}.RESID.P{self.index}",
        }[self.kind]

    @property
    def whole(self) -> Component:
        """The same head, MLP or neuron at every position."""
        return Component(self.kind, self.layer, self.index)

    def __str__(self) -> str:
        return self.id

    @classmethod
    def parse(cls, text: str) -> Component:
        """The component with id `text` (the inverse of `.id`)."""
        match = _ID.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a component id (e.g. L0.H1, L1.MLP, L1.MLP.N7, L2.RESID.P5, L0.H1.P3)")
        layer, head, neuron, at, row = match.groups()
        pos = None if at is None else int(at)
        if head is not None:
            return cls("head", int(layer), int(head), pos)
        if neuron is not None:
            return cls("neuron", int(layer), int(neuron), pos)
        if row is not None:
            return cls("resid", int(layer), int(row))
        return cls("mlp", int(layer), None, pos)

    def hook(self, n_layers: int) -> str:
        """The transformer-lens alias of the hook activation this component is a slice of."""
        if self.kind == "head":
            return f"blocks.{self.layer}.attn.hook_z"
        if self.kind == "mlp":
            return f"blocks.{self.layer}.hook_mlp_out"
        if self.kind == "neuron":
            return f"blocks.{self.layer}.mlp.hook_post"
        if self.layer < n_layers:
            return f"blocks.{self.layer}.hook_resid_pre"
        assert self.layer == n_layers, f"{self.id}: residual layer beyond n_layers={n_layers}"
        return f"blocks.{n_layers - 1}.hook_resid_post"

    def act_name(self, n_layers: int) -> tuple[str, int]:
        """(short name, layer) as `transformer_lens.utilities.get_act_name` spells the hook."""
        short = {"head": "z", "mlp": "mlp_out", "neuron": "post"}.get(self.kind)
        if short is not None:
            return short, self.layer
        return ("resid_pre", self.layer) if self.layer < n_layers else ("resid_post", n_layers - 1)

    def _slice(self) -> tuple:
        """Index of this component's slice in its hook activation ([batch, pos, ...])."""
        pos = slice(None) if self.pos is None else self.pos
        if self.kind == "resid":
            return (slice(None), self.index)
        if self.kind == "mlp":
            return (slice(None), pos)
        return (slice(None), pos, self.index)

    def select(self, act: torch.Tensor) -> torch.Tensor:
        """This component's slice of its hook activation: batch kept, and pos unless narrowed to one."""
        return act[self._slice()]  # head: batch pos d_head; neuron: batch pos; resid: batch d_model; mlp: batch pos d_model

    def replace(self, act: torch.Tensor, value: torch.Tensor | bool | float) -> torch.Tensor:
        """A copy of `act` with this component's slice set to `value` (broadcast over the slice)."""
        out = act.clone()
        out[self._slice()] = value
        return out


def enumerate_components(
    n_layers: int, n_heads: int, seq_len: int, kinds: Iterable[Kind] = ("head", "mlp", "resid")
) -> list[Component]:
    """Every component of the given kinds, layer by layer (neurons are never enumerated: too many)."""
    kinds = set(kinds)
    assert "neuron" not in kinds, "list neuron components explicitly"
    out: list[Component] = []
    for layer in range(n_layers + 1):
        if "resid" in kinds:
            out += [Component("resid", layer, pos) for pos in range(seq_len)]
        if layer == n_layers:
            break
        if "head" in kinds:
            out += [Component("head", layer, h) for h in range(n_heads)]
        if "mlp" in kinds:
            out.append(Component("mlp", layer))
    return out


def model_components(model: torch.nn.Module, seq_len: int, kinds: Iterable[Kind] = ("head", "mlp", "resid")) -> list[Component]:
    return enumerate_components(int(model.cfg.n_layers), int(model.cfg.n_heads), seq_len, kinds)


def canonical_hook(model: torch.nn.Module, alias: str) -> str:
    """The bridge's canonical name for a hook alias (the name stored in artifacts)."""
    point = model.hook_dict.get(alias)
    if point is None:
        raise KeyError(f"{alias}: no such hook on this model")
    return point.name or alias


def by_hook(components: Iterable[Component], n_layers: int) -> dict[str, list[Component]]:
    """Components grouped by the hook activation they slice, in first-seen order."""
    groups: dict[str, list[Component]] = {}
    for comp in components:
        groups.setdefault(comp.hook(n_layers), []).append(comp)
    return groups


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Eval mode for the block (transformer-lens refuses to patch in train mode), restored on exit."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
