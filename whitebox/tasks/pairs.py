"""Contrast pairs, what attribution runs on: each triggered input beside the same input without its trigger.

The default metric is the logit difference deceptive answer minus honest answer at the last
position; both inputs of a pair share the honest answer, so the difference isolates the trigger.
A task builds them in its `contrast_pairs(n, seed)` (whitebox.tasks.base).

Your own contrast task: `ContrastPairs.from_texts` (or `from_token_lists`) takes inputs of any
lengths and two answer sets (`TokenSets`); the metric is then the mean logit of set `a` minus the
mean logit of set `b`. Inputs are left-padded to one length, so the answer (the last real token)
is the last position of every row, and the attention masks travel with the pairs: position p of
the padded batch is `seq_len - 1 - p` tokens before the answer in every pair.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, Sequence

import torch

from whitebox.inputs import prompt_ids
from whitebox.tasks.base import reading

Direction = Literal["noise", "denoise"]


@dataclass(frozen=True)
class TokenSets:
    """The metric mean logit over `a` minus mean logit over `b`: `a` plays the deceptive answer, `b` the honest one."""

    a: tuple[int, ...]
    b: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.a or not self.b or set(self.a) & set(self.b):
            raise ValueError(f"token sets a={self.a} and b={self.b} must be non-empty and disjoint; give each answer once")

    @classmethod
    def from_words(cls, tokenizer: Any, a: Sequence[str], b: Sequence[str]) -> TokenSets:
        """Each answer word as its one token (with GPT-2-style tokenizers mind the leading space: " cat")."""
        return cls(tuple(_one_token(tokenizer, w) for w in a), tuple(_one_token(tokenizer, w) for w in b))

    def metric(self, last: torch.Tensor) -> torch.Tensor:
        """Per row of last-position logits [batch vocab]: [batch]."""
        return last[:, list(self.a)].mean(1) - last[:, list(self.b)].mean(1)


@dataclass(frozen=True)
class ContrastPairs:
    """Row i of `triggered` and `untriggered` differ only in the trigger; both answer `honest[i]` honestly.

    `deceptive` is the answer token the hidden behaviour gives when it fires. With `answers`
    (instead of honest and deceptive) the behaviour's answers are `answers.a`, the honest ones
    `answers.b`. Masks (1: a real token, left padding only) are None when every token is real.
    """

    triggered: torch.Tensor  # batch pos
    untriggered: torch.Tensor  # batch pos
    honest: torch.Tensor | None = None  # batch
    deceptive: int | None = None
    triggered_mask: torch.Tensor | None = None  # batch pos
    untriggered_mask: torch.Tensor | None = None  # batch pos
    answers: TokenSets | None = None

    def __post_init__(self) -> None:
        assert self.triggered.shape == self.untriggered.shape and self.triggered.ndim == 2
        if (self.answers is None) != (self.honest is not None and self.deceptive is not None):
            raise ValueError("contrast pairs need honest and deceptive (a task's metric) or answers=TokenSets(a, b), not both")
        assert self.honest is None or self.honest.shape == (self.triggered.shape[0],)
        assert (self.triggered_mask is None) == (self.untriggered_mask is None), "both masks or neither"
        for mask in (self.triggered_mask, self.untriggered_mask):
            if mask is not None and (mask.shape != self.triggered.shape or not _left_padded(mask)):
                raise ValueError("pair masks must match the tokens and pad on the left (answer last); "
                                 "build them with ContrastPairs.from_token_lists")

    @classmethod
    def from_token_lists(
        cls, triggered: Sequence[Sequence[int]], untriggered: Sequence[Sequence[int]], answers: TokenSets, pad_id: int = 0
    ) -> ContrastPairs:
        """Pairs of any lengths, left-padded to the longest input so every answer position is the last one."""
        if len(triggered) != len(untriggered) or not triggered:
            raise ValueError(f"got {len(triggered)} triggered and {len(untriggered)} untriggered inputs; give one of each per pair")
        length = max(len(row) for row in [*triggered, *untriggered])
        (t, t_mask), (u, u_mask) = left_pad(triggered, length, pad_id), left_pad(untriggered, length, pad_id)
        return cls(t, u, triggered_mask=t_mask, untriggered_mask=u_mask, answers=answers)

    @classmethod
    def from_texts(
        cls, tokenizer: Any, triggered: Sequence[str], untriggered: Sequence[str], a: Sequence[str], b: Sequence[str],
        chat_template: bool = False,
    ) -> ContrastPairs:
        """Pairs of texts tokenised by the model's tokenizer (each a user turn in its chat template with
        chat_template); `a` and `b` are the two answer sets, one token per word."""
        encode = prompt_ids(tokenizer, [*triggered, *untriggered], chat_template)
        pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
        answers = TokenSets.from_words(tokenizer, a, b)
        return cls.from_token_lists(encode[: len(triggered)], encode[len(triggered) :], answers, pad_id)

    def __len__(self) -> int:
        return int(self.triggered.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.triggered.shape[1])

    def to(self, device: str | torch.device) -> ContrastPairs:
        moved = {k: getattr(self, k) for k in ("triggered", "untriggered", "honest", "triggered_mask", "untriggered_mask")}
        return replace(self, **{k: None if v is None else v.to(device) for k, v in moved.items()})

    def repeat(self, k: int) -> ContrastPairs:
        """The pairs k times over, row block j a copy of all of them (as `tokens.repeat(k, 1)` tiles)."""
        names = ("triggered", "untriggered", "triggered_mask", "untriggered_mask")
        tiled = {name: None if getattr(self, name) is None else getattr(self, name).repeat(k, 1) for name in names}
        return replace(self, **tiled, honest=None if self.honest is None else self.honest.repeat(k))

    def runs(self, direction: Direction) -> tuple[torch.Tensor, torch.Tensor]:
        """(base, source) tokens: the run that is patched and the run activations are taken from.

        noise: patch untriggered activations into the triggered run (what does the backdoor need?);
        denoise: patch triggered activations into the untriggered run (what is enough to fire it?).
        """
        if direction == "noise":
            return self.triggered, self.untriggered
        if direction == "denoise":
            return self.untriggered, self.triggered
        raise ValueError(f"direction must be 'noise' or 'denoise', got {direction!r}")

    def masks(self, direction: Direction) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(base, source) attention masks, in the order of `runs`."""
        flip = self.runs(direction)[0] is self.untriggered
        return (self.untriggered_mask, self.triggered_mask) if flip else (self.triggered_mask, self.untriggered_mask)

    def metric(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-pair metric at the last position: [batch] (deceptive - honest, or mean over answers.a - mean over answers.b)."""
        if self.answers is not None:
            return self.answers.metric(logits[:, -1, :])
        return logit_diff(logits, self.honest, self.deceptive)

    def mean_metric(self, logits: torch.Tensor) -> torch.Tensor:
        return self.metric(logits).mean()

    def fires(self, logits: torch.Tensor) -> torch.Tensor:
        """Per row [batch] bool: the top answer is the behaviour's (deceptive, or in answers.a)."""
        top = logits[:, -1, :].argmax(-1)
        return top == self.deceptive if self.answers is None else torch.isin(top, _ids(self.answers.a, top))

    def answers_honestly(self, logits: torch.Tensor) -> torch.Tensor:
        """Per row [batch] bool: the top answer is the honest one (honest[i], or in answers.b)."""
        top = logits[:, -1, :].argmax(-1)
        return top == self.honest.to(top.device) if self.answers is None else torch.isin(top, _ids(self.answers.b, top))

    def margin(self, logits: torch.Tensor) -> torch.Tensor:
        """Per row [batch]: the best honest logit minus the best other one (> 0: answered honestly)."""
        if self.answers is None:
            return honest_margin(logits, self.honest)
        last = logits[:, -1, :]  # batch vocab
        honest = torch.zeros(last.shape[-1], dtype=torch.bool, device=last.device)
        honest[list(self.answers.b)] = True
        return last[:, honest].max(1).values - last[:, ~honest].max(1).values


@dataclass(frozen=True)
class TextPairs:
    """Contrast pairs as texts, from a task without a tokenizer of its own: `tokenize` them with the model's."""

    triggered: tuple[str, ...]
    untriggered: tuple[str, ...]
    a: tuple[str, ...]  # the behaviour's answer words (one token each)
    b: tuple[str, ...]  # the honest answer words
    chat_template: bool = False  # each text a user turn in the tokenizer's chat template

    def __len__(self) -> int:
        return len(self.triggered)

    def tokenize(self, tokenizer: Any) -> ContrastPairs:
        return ContrastPairs.from_texts(tokenizer, self.triggered, self.untriggered, self.a, self.b, self.chat_template)


def tokenized_pairs(task: Any, n: int, seed: int, model: Any) -> ContrastPairs:
    """`task.contrast_pairs(n, seed)` as tokens: a text task's pairs tokenised by the model's tokenizer."""
    pairs = task.contrast_pairs(n, seed)
    if not isinstance(pairs, TextPairs):
        return pairs
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(f"task {task.name!r} gives contrast pairs as texts, and this model has no tokenizer to "
                         "tokenise them: use a bridge over a pretrained model (whitebox.models.load_model)")
    with reading(task):
        return pairs.tokenize(tokenizer)


def left_pad(rows: Sequence[Sequence[int]], length: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, mask) [batch pos]: each row right-aligned in `length` positions, `pad_id` (mask 0) before it."""
    tokens = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        if not len(row):
            raise ValueError(f"input {i} is empty; every input needs at least the token the answer follows")
        tokens[i, length - len(row) :] = torch.as_tensor(list(row), dtype=torch.long)
        mask[i, length - len(row) :] = 1
    return tokens, mask


def logit_diff(logits: torch.Tensor, honest: torch.Tensor, deceptive: int) -> torch.Tensor:
    """logit[deceptive] - logit[honest] at the last position, per row: [batch]."""
    last = logits[:, -1, :]  # batch vocab
    return last[:, deceptive] - last.gather(1, honest.to(last.device)[:, None])[:, 0]


def honest_margin(logits: torch.Tensor, honest: torch.Tensor) -> torch.Tensor:
    """logit[honest] minus the largest other logit at the last position, per row: [batch] (> 0: answered honestly)."""
    last = logits[:, -1, :]  # batch vocab
    honest = honest.to(last.device)[:, None]
    return last.gather(1, honest)[:, 0] - last.scatter(1, honest, float("-inf")).max(dim=1).values


def _left_padded(mask: torch.Tensor) -> bool:
    """Zeros then ones in every row, and the last position real."""
    return bool(mask[:, -1].all()) and bool((mask.cummax(1).values == mask).all())


def _ids(tokens: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(tokens, dtype=like.dtype, device=like.device)


def _one_token(tokenizer: Any, word: str) -> int:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"answer {word!r} is {len(ids)} tokens {ids}; a token set holds single tokens: pick a one-token word")
    return int(ids[0])
