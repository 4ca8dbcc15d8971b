"""Activations (and gradients) at named hooks over a whole dataset, in chunks, at chosen positions.

`capture(model, data, hooks, positions=...)` runs the model batch by batch inside a scoped hooks
context, keeps only the selected positions of each hook activation, and writes them into one
`[rows, d]` tensor per canonical hook name, either in RAM or (with `out_dir`) in `.npy` files that
are memory-mapped back, so a capture larger than RAM never has to fit in it. Rows are
example-major: with `positions="all"` row `r` is example `example[r]` at token `position[r]`.

Inputs of different lengths (strings tokenised with the model's tokenizer, token lists, or a
`tokens` column with an `attention_mask` column) are padded on the right: a causal model's
activations at a real token never see the padding after it, so `last` is each input's last real
token, `all` its real tokens and `mean` their average (one row per input). With
`positions={"match": " secret"}` each text's rows are the tokens spelling the first occurrence of
" secret" (the last of them, or all with `"tokens": "all"`); the rule is recorded with the tokens it read.
With `chat_template=True` each text is first wrapped as a user turn in the tokenizer's chat template.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import torch

from whitebox import fast_path
from whitebox.fingerprint import model_identity
from whitebox.hf_map import hf_location
from whitebox.inputs import (
    PositionRule,
    as_tokens,
    column,
    is_dataset,
    match_mask,
    position_mask,
    prompt_format,
    texts_of,
)
from whitebox.runtime.artifacts import ArtifactError, one_line, read_json, write_json

if TYPE_CHECKING:
    from datasets import Dataset

GradFn = Callable[[torch.Tensor, Mapping[str, torch.Tensor]], torch.Tensor]
"""(logits [batch, pos, vocab], batch columns) -> one scalar per example [batch]."""

CAPTURE_FORMAT_VERSION = 1
MANIFEST = "capture.json"


@dataclass
class Captured:
    """Per-hook activations `[rows, d]` with the labels and the (example, position) of every row."""

    acts: dict[str, torch.Tensor]  # canonical hook -> rows d
    labels: torch.Tensor | None  # rows
    example: torch.Tensor  # rows: index of the source example
    position: torch.Tensor  # rows: token position read (non-negative; -1 for a "mean" row)
    positions: PositionRule  # the rule the rows were selected by (a match rule with the tokens it selected)
    grads: dict[str, torch.Tensor] | None = None  # canonical hook -> rows d, same rows as acts
    model: dict[str, Any] | None = None  # model identity, see whitebox.fingerprint.model_identity
    locations: dict[str, dict[str, Any]] | None = None  # hook -> where it is in the HF model (whitebox.hf_map)
    prompt_format: dict[str, Any] | None = None  # how texts became prompts (whitebox.inputs.prompt_format); None: token ids

    @property
    def hooks(self) -> list[str]:
        return list(self.acts)

    def __len__(self) -> int:
        return len(self.example)


def canonical_hook(model: torch.nn.Module, name: str) -> str:
    """The bridge's canonical name for a hook name or alias; ValueError naming close matches if absent."""
    point = getattr(model, "hook_dict", {}).get(name)
    if point is None:
        import difflib

        near = difflib.get_close_matches(name, list(getattr(model, "hook_dict", {})), n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else "; see model.hook_dict for the names"
        raise ValueError(f"{name}: no such hook on this model{hint}")
    return point.name or name


def resolve_hooks(model: torch.nn.Module, hooks: str | Sequence[str]) -> list[str]:
    """Canonical names for `hooks` ("resid" means residual_hooks), aliases merged, order kept."""
    names = residual_hooks(model) if hooks == "resid" else [hooks] if isinstance(hooks, str) else list(hooks)
    return list(dict.fromkeys(canonical_hook(model, h) for h in names))


def residual_hooks(model: torch.nn.Module) -> list[str]:
    """Every distinct residual-stream point, canonical: block 0's input, then each block's mid and output.

    `blocks.L.hook_resid_pre` for L > 0 is the same tensor as `blocks.{L-1}.hook_resid_post`, so it
    is left out; 2 * n_layers + 1 names in forward order.
    """
    n_layers = int(model.cfg.n_layers)
    aliases = ["blocks.0.hook_resid_pre"]
    for layer in range(n_layers):
        aliases += [f"blocks.{layer}.hook_resid_mid", f"blocks.{layer}.hook_resid_post"]
    return [canonical_hook(model, a) for a in aliases if a in model.hook_dict]


def capture(
    model: torch.nn.Module,
    data: Dataset | torch.Tensor | Sequence[str] | Sequence[Sequence[int]],
    hooks: str | Sequence[str],
    *,
    positions: PositionRule | torch.Tensor = "last",
    labels: str | torch.Tensor | Sequence[int] | None = None,
    attention_mask: torch.Tensor | None = None,
    batch_size: int = 256,
    out_dir: str | Path | None = None,
    grad_fn: GradFn | None = None,
    dtype: torch.dtype = torch.float32,
    cfg: Any = None,
    chat_template: bool = False,
) -> Captured:
    """Activations at `hooks` for every example of `data`, batch by batch, keeping only `positions`.

    data: a Dataset with a `tokens` column (and optionally `attention_mask`) or a `text` column, a `[n, pos]` token
    tensor, a list of strings (tokenised with the model's tokenizer) or of token-id lists.
    positions: "last", "all", "mean", an index (negative: from each input's end), `{"match": text}`
    (the last token spelling text's first occurrence; `"tokens": "all"` for all of them; text inputs only),
    or a `[n, pos]` boolean mask. labels: a column name of `data` or `[n]` values. attention_mask: `[n, pos]`,
    1 at real tokens, for a padded token tensor.
    out_dir: write `.npy` files there and return memory-mapped tensors. grad_fn: also capture the
    gradient of `grad_fn(logits, batch).sum()` with respect to each hook activation. cfg: the
    model's ModelConfig, recorded in the model identity so probes can check the full fingerprint.
    chat_template: wrap each text as a user turn in the tokenizer's chat template before tokenising.
    """
    names = resolve_hooks(model, hooks)
    tokens, real = as_tokens(model, data, attention_mask, chat_template)  # n pos, n pos (bool: real tokens)
    n, seq = tokens.shape
    texts = texts_of(data)
    rule: PositionRule = "mask" if isinstance(positions, torch.Tensor) else positions
    if isinstance(positions, dict):
        if texts is None:
            raise ValueError("a match position finds a string in text inputs, but these are token ids; pass strings "
                             "(or a bool positions mask)")
        positions, rule = match_mask(model, texts, tokens, positions, chat_template)
    mean = positions == "mean"
    if mean and grad_fn is not None:
        raise ValueError("positions='mean' averages activations; capture gradients at 'all' and average those")
    mask = position_mask("all" if mean else positions, real)  # n pos, bool
    rows_per_example = torch.ones(n, dtype=torch.long) if mean else mask.sum(1)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), rows_per_example.cumsum(0)])
    example, position = (torch.arange(n), torch.full((n,), -1)) if mean else mask.nonzero(as_tuple=True)  # rows
    if len(example) == 0 or (mean and not bool(mask.any(1).all())):
        raise ValueError("the positions select no token of some input; nothing to capture there")
    label_rows = _labels(data, labels, n)
    store = _Store(out_dir, int(offsets[-1]), dtype, with_grads=grad_fn is not None)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            batch = _batch(data, tokens, start, stop, device)
            acts, grads = _run_batch(model, batch, names, mask[start:stop].to(device), grad_fn, mean)
            for name in names:
                store.write("acts", name, int(offsets[start]), int(offsets[stop]), acts[name])
                if grads is not None:
                    store.write("grads", name, int(offsets[start]), int(offsets[stop]), grads[name])
    finally:
        model.train(was_training)
    labels_out = None if label_rows is None else label_rows[example]
    identity = model_identity(model, cfg)
    captured = store.finish(names, labels_out, example, position, rule, identity)
    captured.locations = {h: loc for h in names if (loc := hf_location(model, h)) is not None} or None
    captured.prompt_format = None if texts is None else prompt_format(model, chat_template)
    return captured


def load_capture(out_dir: str | Path) -> Captured:
    """Reopen an on-disk capture as memory-mapped tensors; refuses one that never finished."""
    out_dir = Path(out_dir)
    manifest = read_json(out_dir / MANIFEST)
    files = _checked_files(out_dir / MANIFEST, manifest)
    acts = {h: _open(out_dir / f) for h, f in files["acts"].items()}
    grads = {h: _open(out_dir / f) for h, f in files["grads"].items()} if files.get("grads") else None
    labels = _open(out_dir / files["labels"]) if files.get("labels") else None
    example, position = _open(out_dir / files["example"]), _open(out_dir / files["position"])
    if any(t.shape[:1] != example.shape[:1] for t in [*acts.values(), *(grads or {}).values(), position]):
        raise ArtifactError(f"{out_dir}: the capture's files hold different numbers of rows; it is damaged")
    return Captured(acts, labels, example, position, manifest["positions"], grads, manifest.get("model"))


def _checked_files(path: Path, manifest: Any) -> dict[str, Any]:
    """The manifest's `files`, each a .npy name inside the capture's folder; ArtifactError naming the field."""
    if not isinstance(manifest, dict) or manifest.get("format_version") != CAPTURE_FORMAT_VERSION:
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise ArtifactError(f"{path}: field 'format_version' is {version!r}, this whitebox reads {CAPTURE_FORMAT_VERSION}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not isinstance(files.get("acts"), dict) or not isinstance(files.get("grads") or {}, dict):
        raise ArtifactError(f"{path}: field 'files' must map acts (and grads) to their files; the capture is damaged")
    names = [*files["acts"].values(), *(files.get("grads") or {}).values(), files.get("example"), files.get("position"),
             *([files["labels"]] if files.get("labels") is not None else [])]
    if not all(isinstance(n, str) and n.endswith(".npy") and Path(n).name == n for n in names):
        raise ArtifactError(f"{path}: field 'files' must name .npy files inside the capture's folder; it is damaged")
    if not isinstance(manifest.get("positions"), (str, int, dict)) or isinstance(manifest["positions"], bool):
        raise ArtifactError(f"{path}: field 'positions' must be a position rule; the capture is damaged")
    return files


def _labels(data: Any, labels: str | torch.Tensor | Sequence[int] | None, n: int) -> torch.Tensor | None:
    if labels is None:
        return None
    if isinstance(labels, str):
        if not is_dataset(data) or labels not in data.column_names:
            raise ValueError(f"labels={labels!r}: not a column of the data")
        labels = column(data, labels)
    labels = torch.as_tensor(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape [{n}], got {list(labels.shape)}")
    return labels.cpu()


def _batch(data: Any, tokens: torch.Tensor, start: int, stop: int, device: torch.device) -> dict:
    """Rows start:stop on `device`: the (tokenised) tokens, and a Dataset's other columns for grad_fn."""
    batch = {"tokens": tokens[start:stop].to(device)}
    if is_dataset(data):
        rows = data.with_format("torch")[start:stop]
        batch |= {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in rows.items() if k != "tokens"}
    return batch


def _run_batch(
    model: torch.nn.Module, batch: dict, names: list[str], mask: torch.Tensor, grad_fn: GradFn | None, mean: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """One forward pass (and backward with grad_fn); activations at the masked positions (rows d), or their mean per input."""
    fast = None
    if grad_fn is None:
        with torch.no_grad():
            fast = fast_path.residuals(model, batch["tokens"], names)  # no hook needed for the residual stream
    seen: dict[str, torch.Tensor] = fast or {}

    def grab(act: torch.Tensor, hook: Any) -> torch.Tensor:
        if grad_fn is not None and not act.requires_grad:
            act = act.detach().requires_grad_(True)  # no parameter upstream needs a gradient
        seen[hook.name] = act  # batch pos d
        return act

    grads = None
    if fast is None:
        with torch.set_grad_enabled(grad_fn is not None), model.hooks(fwd_hooks=[(h, grab) for h in names]):
            logits = model(batch["tokens"])  # batch pos vocab
            missing = [h for h in names if h not in seen]
            if missing:
                raise ValueError(f"hooks {missing} never fired in the forward pass; they may be gated off on this model")
            if grad_fn is not None:
                out = grad_fn(logits, batch).sum()
                raw = torch.autograd.grad(out, [seen[h] for h in names], allow_unused=True)
                grads = {h: (torch.zeros_like(seen[h]) if g is None else g)[mask] for h, g in zip(names, raw, strict=True)}
    if mean:  # batch d: the average over each input's selected positions
        weights = (mask / mask.sum(1, keepdim=True)).to(seen[names[0]].dtype)[..., None]  # batch pos 1
        return {h: (seen[h].detach() * weights).sum(1) for h in names}, grads
    acts = {h: seen[h].detach()[mask] for h in names}  # rows d
    return acts, grads


class _Store:
    """Preallocated `[rows, d]` outputs per hook, in RAM or as .npy memmaps, created on first write."""

    def __init__(self, out_dir: str | Path | None, rows: int, dtype: torch.dtype, with_grads: bool):
        self.dir = None if out_dir is None else Path(out_dir)
        self.rows, self.dtype, self.with_grads = rows, dtype, with_grads
        self.out: dict[tuple[str, str], torch.Tensor] = {}
        self.maps: list[np.memmap] = []
        self.files: dict[str, dict[str, str]] = {"acts": {}, "grads": {}}
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / MANIFEST).unlink(missing_ok=True)  # mark incomplete until finish()

    def write(self, kind: str, hook: str, r0: int, r1: int, block: torch.Tensor) -> None:
        key = (kind, hook)
        if key not in self.out:
            shape = (self.rows, *block.shape[1:])
            if self.dir is None:
                self.out[key] = torch.empty(shape, dtype=self.dtype)
            else:
                name = f"{kind}.{hook}.npy"
                self.files[kind][hook] = name
                mm = np.lib.format.open_memmap(self.dir / name, mode="w+", dtype=_np_dtype(self.dtype), shape=shape)
                self.maps.append(mm)
                self.out[key] = torch.from_numpy(mm)
        self.out[key][r0:r1] = block.to("cpu", self.dtype)

    def finish(self, names, labels, example, position, rule, identity) -> Captured:
        def get(kind: str) -> dict[str, torch.Tensor]:
            return {h: self.out.get((kind, h), torch.empty(0, 0, dtype=self.dtype)) for h in names}

        if self.dir is None:
            grads = get("grads") if self.with_grads else None
            return Captured(get("acts"), labels, example, position, rule, grads, identity)
        for mm in self.maps:
            mm.flush()
        self.out.clear()
        self.maps.clear()
        files = {"acts": self.files["acts"], "grads": self.files["grads"] if self.with_grads else None}
        for key, tensor in (("example", example), ("position", position), ("labels", labels)):
            if tensor is not None:
                np.save(self.dir / f"{key}.npy", tensor.numpy())
                files[key] = f"{key}.npy"
        manifest = {"format_version": CAPTURE_FORMAT_VERSION, "hooks": names, "rows": self.rows,
                    "positions": rule, "dtype": str(self.dtype).removeprefix("torch."), "model": identity, "files": files}
        write_json(self.dir / MANIFEST, manifest)
        return load_capture(self.dir)


def _np_dtype(dtype: torch.dtype) -> np.dtype:
    try:
        return np.dtype(str(dtype).removeprefix("torch."))
    except TypeError:
        raise ValueError(f"on-disk capture needs a numpy dtype (float16/32/64), not {dtype}") from None


def _open(path: Path) -> torch.Tensor:
    """A copy-on-write memory map of a .npy file as a tensor (writes never reach the file)."""
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found; the capture is incomplete")
    try:
        return torch.from_numpy(np.load(path, mmap_mode="c"))
    except (ValueError, OSError, TypeError, EOFError) as err:
        raise ArtifactError(f"{path}: unreadable .npy file ({one_line(err)}); the capture is damaged") from None
