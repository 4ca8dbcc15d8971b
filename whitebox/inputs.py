"""Any accepted input as right-padded token ids and a real-token mask, and the positions a rule reads in them.

Strings are tokenised with the model's own tokenizer, token-id lists padded, a `tokens` tensor
taken with its attention mask. Padding goes on the right: a causal model's activations at a real
token never see the padding after it, so reading real tokens only gives what each input gives alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Sequence

import torch

if TYPE_CHECKING:
    from datasets import Dataset

PositionRule = Literal["last", "all", "mean", "mask"] | int


def as_tokens(
    model: torch.nn.Module, data: Any, attention_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [n, pos], real [n, pos] bool) for any accepted input, padded on the right."""
    if is_dataset(data) and "tokens" not in data.column_names and "text" in data.column_names:
        return tokenize(model, list(data["text"]))
    if is_dataset(data):
        tokens = column(data, "tokens")
        if attention_mask is None and "attention_mask" in data.column_names:
            attention_mask = column(data, "attention_mask")
    elif isinstance(data, torch.Tensor):
        tokens = data
    elif isinstance(data, Sequence) and len(data) and all(isinstance(x, str) for x in data):
        return tokenize(model, list(data))
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


def tokenize(model: torch.nn.Module, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [n, pos] and real-token mask [n, pos] of `texts`, with the model's tokenizer, padded on the right."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("this model has no tokenizer to turn strings into tokens; pass token ids instead")
    ids = [tokenizer(text)["input_ids"] for text in texts]
    if any(len(x) == 0 for x in ids):
        raise ValueError("a string tokenised to no tokens at all; every input needs at least one")
    return _pad([torch.as_tensor(x, dtype=torch.long) for x in ids], tokenizer.pad_token_id or 0)


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
            raise ValueError(f"position {positions} lies outside some input (lengths {int(lengths.min())}-{int(lengths.max())})")
    else:
        raise ValueError(f"positions must be 'last', 'all', 'mean', an index or a bool mask, got {positions!r}")
    mask = torch.zeros(n, seq, dtype=torch.bool)
    mask[torch.arange(n), index] = True
    return mask


def is_dataset(data: Any) -> bool:
    """A `datasets.Dataset` (by its interface: loading probes and capturing never import `datasets`)."""
    return hasattr(data, "column_names") and hasattr(data, "select_columns")


def column(data: Dataset, name: str) -> torch.Tensor:
    """One whole column as a tensor (tokens and labels are small next to activations)."""
    return torch.as_tensor(data.select_columns([name]).with_format("torch")[:][name])
