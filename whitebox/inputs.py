"""Any accepted input as right-padded token ids and a real-token mask, and the positions a rule reads in them.

Strings are tokenised with the model's own tokenizer (wrapped in its chat template when asked),
token-id lists padded, a `tokens` tensor taken with its attention mask. Padding goes on the right:
a causal model's activations at a real token never see the padding after it, so reading real tokens
only gives what each input gives alone. A `MatchRule` reads the tokens that spell a string in each
text, found through the tokenizer's character offsets.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import TYPE_CHECKING, Any, Literal, NotRequired, Sequence, TypedDict

import torch

if TYPE_CHECKING:
    from datasets import Dataset


class InputError(ValueError):
    """Inputs that cannot be read as asked (a text without the match string, a text of no tokens, no chat template):
    `key` names the setting a configured run fixes it with, so the run can report one line naming it and the data."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key


class MatchRule(TypedDict):
    """The tokens spelling the first occurrence of `match` in each text: the last of them, or all of them."""

    match: str
    tokens: NotRequired[Literal["last", "all"]]  # default "last"
    selected: NotRequired[dict[str, int]]  # written by capture: how many rows read each token; ignored as input


PositionRule = Literal["last", "all", "mean", "mask"] | int | MatchRule


def texts_of(data: Any) -> list[str] | None:
    """The strings of a text input (a list of strings, or a Dataset with a text column and no tokens); else None."""
    if is_dataset(data) and "tokens" not in data.column_names and "text" in data.column_names:
        return list(data["text"])
    if not is_dataset(data) and isinstance(data, Sequence) and len(data) and all(isinstance(x, str) for x in data):
        return list(data)
    return None


def as_tokens(
    model: torch.nn.Module, data: Any, attention_mask: torch.Tensor | None, chat_template: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [n, pos], real [n, pos] bool) for any accepted input, padded on the right."""
    texts = texts_of(data)
    if texts is not None:
        return tokenize(model, texts, chat_template)
    if chat_template:
        raise ValueError("chat_template=True wraps text prompts, but these inputs are token ids; pass strings")
    if is_dataset(data):
        tokens = column(data, "tokens")
        if attention_mask is None and "attention_mask" in data.column_names:
            attention_mask = column(data, "attention_mask")
    elif isinstance(data, torch.Tensor):
        tokens = data
    elif isinstance(data, Sequence) and len(data) and all(isinstance(x, Sequence) and len(x) for x in data):
        return _pad([torch.as_tensor(list(x), dtype=torch.long) for x in data], 0)
    else:
        raise ValueError("data must be a Dataset with a tokens column, a [n, pos] token tensor, or a non-empty list "
                         "of strings or of non-empty token-id lists")
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [n, pos], got shape {list(tokens.shape)}")
    if attention_mask is None:
        return tokens, torch.ones(tokens.shape, dtype=torch.bool)
    real = torch.as_tensor(attention_mask).bool().cpu()
    if real.shape != tokens.shape:
        raise ValueError(f"attention_mask must have the tokens' shape {list(tokens.shape)}, got {list(real.shape)}")
    if bool((real[:, 1:] & ~real[:, :-1]).any()) or not bool(real[:, 0].all()):
        raise ValueError("attention_mask must mark a prefix of each row (padding on the right, at least one real token)")
    return tokens, real


def tokenize(model: torch.nn.Module, texts: list[str], chat_template: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [n, pos] and real-token mask [n, pos] of `texts`, with the model's tokenizer, padded on the right."""
    tokenizer = tokenizer_of(model, chat_template)
    ids = prompt_ids(tokenizer, texts, chat_template)
    return _pad([torch.as_tensor(x, dtype=torch.long) for x in ids], tokenizer.pad_token_id or 0)


def prompt_ids(tokenizer: Any, texts: Sequence[str], chat_template: bool = False) -> list[list[int]]:
    """Each text's token ids, alone or as a user turn in the tokenizer's chat template; none may be empty."""
    check_template(tokenizer, chat_template)
    ids = [_encode(tokenizer, text, chat_template)[0]["input_ids"] for text in texts]
    empty = next((i for i, x in enumerate(ids) if len(x) == 0), None)
    if empty is not None:
        raise InputError(f"input {empty} ({texts[empty][:60]!r}) tokenised to no tokens at all; every input needs at "
                         "least one (drop the empty texts)", "task.path")
    return ids


def tokenizer_of(model: torch.nn.Module, chat_template: bool = False) -> Any:
    """The model's tokenizer; refused when there is none, or when a chat template is asked for and it has none."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("this model has no tokenizer to turn strings into tokens; pass token ids instead")
    check_template(tokenizer, chat_template)
    return tokenizer


def check_template(tokenizer: Any, chat_template: bool) -> None:
    """A chat template asked for must exist."""
    if chat_template and not getattr(tokenizer, "chat_template", None):
        raise InputError("chat_template=True but this model's tokenizer has no chat template; set "
                         "tokenizer.chat_template or leave chat_template off", "task.chat_template")


def prompt_format(model: torch.nn.Module, chat_template: bool) -> dict[str, Any]:
    """How texts became prompts, for probe artifacts: plain, or the chat template (with its sha256)."""
    if not chat_template:
        return {"chat_template": False}
    template = tokenizer_of(model, True).chat_template
    return {"chat_template": True, "template_sha256": hashlib.sha256(template.encode()).hexdigest()}


def _encode(tokenizer: Any, text: str, chat_template: bool, offsets: bool = False) -> tuple[Any, str, int]:
    """(encoding, the prompt the model reads, where `text` starts in it): `text` alone, or as a user turn."""
    if not chat_template:
        return tokenizer(text, return_offsets_mapping=offsets), text, 0
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    # the template writes the special tokens itself
    return tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=offsets), prompt, max(prompt.find(text), 0)


def match_mask(
    model: torch.nn.Module, texts: list[str], tokens: torch.Tensor, rule: MatchRule, chat_template: bool = False
) -> tuple[torch.Tensor, MatchRule]:
    """The `[n, pos]` mask of the tokens spelling `rule["match"]` in each text (tokenised as `tokens`), and the
    rule with what it selected."""
    tokenizer = tokenizer_of(model, chat_template)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("a match position needs a fast tokenizer (character offsets); load the model's fast tokenizer")
    which = rule.get("tokens", "last")
    mask = torch.zeros(tokens.shape, dtype=torch.bool)
    for i, text in enumerate(texts):
        encoding, prompt, begin = _encode(tokenizer, text, chat_template, offsets=True)
        start = prompt.find(rule["match"], begin)
        if start < 0:
            raise InputError(f"input {i} ({text[:60]!r}) does not contain {rule['match']!r}; choose a string every "
                             "input contains, or drop the inputs without it", "locate.position")
        end = start + len(rule["match"])
        hits = [p for p, (a, b) in enumerate(encoding["offset_mapping"]) if a < end and b > start and b > a]
        if not hits:
            raise InputError(f"input {i} ({text[:60]!r}): no token spells {rule['match']!r} (only whitespace?); "
                             "match a word", "locate.position")
        mask[i, hits[-1:] if which == "last" else hits] = True
    read = Counter(tokenizer.convert_ids_to_tokens(tokens[mask].tolist()))
    return mask, {"match": rule["match"], "tokens": which, "selected": dict(read.most_common())}


def _pad(rows: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad_id)  # n pos
    real = torch.arange(tokens.shape[1])[None] < torch.tensor([len(r) for r in rows])[:, None]
    return tokens, real


def position_mask(positions: PositionRule | torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """The `[n, pos]` boolean mask of the real token positions a rule selects."""
    n, seq = real.shape
    lengths = real.sum(1)  # n
    if isinstance(positions, torch.Tensor):
        if positions.shape != (n, seq) or positions.dtype != torch.bool:
            got = f"{positions.dtype} {list(positions.shape)}"
            raise ValueError(f"a positions mask must be bool of shape [{n}, {seq}], got {got}")
        return positions.cpu() & real
    if positions == "all":
        return real.clone()
    if positions == "last":
        index = lengths - 1
    elif isinstance(positions, int) and not isinstance(positions, bool):
        index = torch.full((n,), positions) if positions >= 0 else lengths + positions
        if bool((index < 0).any() | (index >= lengths).any()):
            raise InputError(f"position {positions} lies outside some input (lengths {int(lengths.min())}-"
                             f"{int(lengths.max())}); choose an index every input has, or 'last'", "locate.position")
    else:
        raise ValueError(f"positions must be 'last', 'all', 'mean', an index, {{'match': text}} or a bool mask, "
                         f"got {positions!r}")
    mask = torch.zeros(n, seq, dtype=torch.bool)
    mask[torch.arange(n), index] = True
    return mask


def is_dataset(data: Any) -> bool:
    """A `datasets.Dataset` (by its interface: loading probes and capturing never import `datasets`)."""
    return hasattr(data, "column_names") and hasattr(data, "select_columns")


def column(data: Dataset, name: str) -> torch.Tensor:
    """One whole column as a tensor (tokens and labels are small next to activations)."""
    return torch.as_tensor(data.select_columns([name]).with_format("torch")[:][name])
