"""Hook-free forwards through fused kernels, on the bridge's own parameters.

A TransformerBridge runs every activation through a HookPoint and materialises the attention
pattern, which only hooks need. When nothing is hooked, a native bridge's forward is recomputed here
from the wrapped torch modules (the same parameter tensors): scaled_dot_product_attention instead of
the explicit softmax, the norms and linears called directly, and, when only the answer position's
logits are read (answer_logits), the last block's query and MLP at that position only; and where a batch
repeats a few (token, position) pairs (fixed-format tasks), the first block's projections once per pair. Gradients,
optimizers, checkpoints and ES's swapped parameters see the very same tensors, so training through
this path changes nothing but rounding (see docs/BENCHMARKS.md for how much). Two hooked uses have their own entry:
`residuals` (what capture reads at residual-stream hooks) and `run_with_hooks` (patching edits at the residual
stream, head outputs and MLP activations), each calling the hook functions on tensors in the bridge's layout. Any
other hook, a cache or an unsupported architecture falls back to the bridge's own forward. WHITEBOX_FAST_PATH=0 in the environment sends every forward
through the bridge (how runs before the fast path computed; env.json records which was used).
"""

from __future__ import annotations

import contextlib
import os
import weakref
from functools import partial
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from einops import rearrange
from torch.nn.modules import module as torch_module

_HOOK_POINTS: weakref.WeakKeyDictionary[torch.nn.Module, list[torch.nn.Module]] = weakref.WeakKeyDictionary()
_UNSUPPORTED: weakref.WeakKeyDictionary[torch.nn.Module, str | None] = weakref.WeakKeyDictionary()
_SITES: weakref.WeakKeyDictionary[torch.nn.Module, dict[str, tuple[int, str]]] = weakref.WeakKeyDictionary()
_enabled = os.environ.get("WHITEBOX_FAST_PATH", "1") != "0"


def set_enabled(enabled: bool) -> bool:
    """Turn the fast path on or off process-wide (benchmarks and equality tests); returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, enabled
    return previous


def enabled() -> bool:
    return _enabled


@contextlib.contextmanager
def switched(on: bool) -> Iterator[None]:
    """The fast path on or off for the block (side-by-side comparisons), the previous setting restored after it."""
    previous = set_enabled(on)
    try:
        yield
    finally:
        set_enabled(previous)


def why_not(model: torch.nn.Module) -> str | None:
    """Why `model` cannot take the fast path at all (None: it can, whenever nothing is hooked)."""
    if model not in _UNSUPPORTED:
        _UNSUPPORTED[model] = _unsupported(model)
    return _UNSUPPORTED[model]


def _unsupported(model: torch.nn.Module) -> str | None:
    if not hasattr(model, "original_model"):  # not a bridge: transformer-lens need not even be imported
        return "only native bridges have a fast path"
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.model_bridge.sources.native.model import NativeMLP, NativeModel, NativeRMSNorm

    if not isinstance(model, TransformerBridge) or not isinstance(model.original_model, NativeModel):
        return "only native bridges have a fast path"
    cfg = model.cfg
    inner = model.original_model
    if inner.pos is None:
        return "rotary position embeddings"
    if float(cfg.attn_scores_soft_cap) > 0 or float(cfg.output_logits_soft_cap) > 0:
        return "soft-capped scores or logits"
    if cfg.attention_dir != "causal":
        return "bidirectional attention"
    if cfg.attn_only or any(not isinstance(_inner(b).mlp._original_component, NativeMLP) for b in inner.layers):
        return "attention-only or gated-MLP blocks"
    if any(_inner(b).mlp._original_component.ln is not None for b in inner.layers):
        return "SoLU-LN MLPs"
    norms = [_orig(inner.ln_out)] + [_orig(getattr(_inner(b), ln)) for b in inner.layers for ln in ("ln1", "ln2")]
    if not all(isinstance(n, (torch.nn.Identity, torch.nn.LayerNorm, NativeRMSNorm)) for n in norms):
        return "parameter-free (Pre) norms"
    return None


def hooked(model: torch.nn.Module) -> bool:
    """Whether any hook (forward, pre-forward or backward, on a HookPoint or globally) could observe a forward."""
    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks or torch_module._global_backward_hooks:
        return True
    if model not in _HOOK_POINTS:
        _HOOK_POINTS[model] = [m for m in model.modules() if type(m).__name__ == "HookPoint"]
    return any(h._forward_hooks or h._forward_pre_hooks or h._backward_hooks or h._backward_pre_hooks
               for h in _HOOK_POINTS[model])


def usable(model: torch.nn.Module) -> bool:
    """Take the fast path for this call: enabled, a supported bridge, and nothing hooked."""
    return _enabled and why_not(model) is None and not hooked(model)


def logits(model: torch.nn.Module, tokens: torch.Tensor, *, last_only: bool = False) -> torch.Tensor:
    """The model's logits [batch, pos, vocab] (or [batch, vocab] at the last position with last_only),
    through the fast path when it is usable and through the bridge otherwise."""
    if not usable(model):
        out = model(tokens)
        return out[:, -1, :] if last_only else out
    return _forward(model.original_model, tokens, getattr, last_only, distinct=True)


def population_logits(
    model: torch.nn.Module, members: dict[str, torch.Tensor], tokens: torch.Tensor, *, last_only: bool = True
) -> torch.Tensor:
    """Logits of every member on the same tokens in one batched forward: [members, batch, (pos,) vocab].

    `members` maps parameter names (model.named_parameters()) to stacked weights [members, *shape];
    a parameter left out is shared by every member. Needs usable(model).
    """
    if not usable(model):
        raise ValueError(f"population_logits needs the fast path ({why_not(model) or 'the model is hooked'})")
    names = {id(p): name for name, p in model.named_parameters()}
    count = len(next(iter(members.values())))

    def weight(module: torch.nn.Module, leaf: str) -> torch.Tensor | None:
        own = getattr(module, leaf)
        return members.get(names.get(id(own), ""), own) if own is not None else None

    return _forward(model.original_model, tokens.expand(count, *tokens.shape), weight, last_only)


Weight = Callable[[torch.nn.Module, str], "torch.Tensor | None"]


def residuals(model: torch.nn.Module, tokens: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor] | None:
    """The residual stream [batch, pos, d_model] at each hook of `names` (canonical names of resid_pre, resid_mid or
    resid_post hooks), computed only up to the last block they need; None when the fast path is not usable or a name
    is not a residual hook (the caller then hooks the bridge)."""
    if not usable(model):
        return None
    sites = residual_sites(model)
    if not all(name in sites for name in names):
        return None
    wanted = {sites[name]: name for name in names}
    seen: dict[str, torch.Tensor] = {}

    def record(site: Site, x: torch.Tensor) -> torch.Tensor:
        if site in wanted:
            seen[wanted[site]] = x
        return x

    layers = max(layer + (kind != "pre") for layer, kind in wanted)
    _forward(model.original_model, tokens, getattr, False, distinct=True, edit=record, layers=layers)
    return seen


def run_with_hooks(model: torch.nn.Module, tokens: torch.Tensor, fwd_hooks: list[tuple[str, Callable]]) -> torch.Tensor | None:
    """`model.run_with_hooks(tokens, fwd_hooks=...)` [batch, pos, vocab] through the fast path, each hook called as
    the bridge calls it (`fn(act, hook=point)`, a returned tensor replacing act) with the activation in the bridge's
    layout; None when the fast path is not usable or a hook sits where it does not reach (the caller then runs the
    bridge). It reaches the residual stream, each head's attention output (attn.hook_z) and the MLP's hidden
    (mlp.hook_post) and output (hook_mlp_out); no attention mask (pass none to the bridge either)."""
    if not usable(model):
        return None
    sites, points = hookable_sites(model), model.hook_dict
    if not all(name in sites for name, _ in fwd_hooks):
        return None
    by_site: dict[Site, list[tuple[Any, Callable]]] = {}
    for name, fn in fwd_hooks:
        by_site.setdefault(sites[name], []).append((points[name], fn))

    def edit(site: Site, x: torch.Tensor) -> torch.Tensor:
        for point, fn in by_site.get(site, ()):
            out = fn(x, hook=point)
            x = x if out is None else out
        return x

    return _forward(model.original_model, tokens, getattr, False, distinct=True, edit=edit)


def residual_sites(model: torch.nn.Module) -> dict[str, Site]:
    """Each residual hook's canonical name -> (layer, "pre" | "mid" | "post"); resid_pre of layer l > 0 is read as
    resid_post of layer l - 1, the same tensor."""
    return {name: site for name, site in hookable_sites(model).items() if site[1] in ("pre", "mid", "post")}


def hookable_sites(model: torch.nn.Module) -> dict[str, Site]:
    """Every hook name (alias or canonical) the fast path can serve -> its site in _forward (built once per model:
    the bridge's hook_dict is a fresh copy on every access)."""
    if model not in _SITES:
        kinds = {"hook_resid_pre": "pre", "hook_resid_mid": "mid", "hook_resid_post": "post", "attn.hook_z": "z",
                 "mlp.hook_post": "mlp_post", "hook_mlp_out": "mlp_out"}
        points, out = model.hook_dict, {}
        for layer in range(int(model.cfg.n_layers)):
            for alias, kind in kinds.items():
                point = points.get(f"blocks.{layer}.{alias}")
                if point is not None:
                    site = (layer - 1, "post") if kind == "pre" and layer else (layer, kind)
                    out[f"blocks.{layer}.{alias}"] = out[point.name or f"blocks.{layer}.{alias}"] = site
        _SITES[model] = out
    return _SITES[model]


Site = tuple[int, str]  # (layer, "pre" | "mid" | "post" | "z" | "mlp_post" | "mlp_out")
Edit = Callable[[Site, torch.Tensor], torch.Tensor]


def _forward(
    inner: Any, tokens: torch.Tensor, weight: Weight, last_only: bool, distinct: bool = False,
    edit: Edit | None = None, layers: int | None = None,
) -> torch.Tensor:
    """The native model's forward on `tokens` [*lead, pos] with each parameter read through `weight`;
    a weight with one more leading dim than the module's holds one copy per member (lead = members, batch).
    With `distinct` (one model), the first block's query, key and value are computed once per distinct
    (token, position) pair when those are at most a quarter of the rows, e.g. a fixed-format task's few symbols.
    `edit(site, x)` sees (and may replace) each activation run_with_hooks can hook, in the bridge's layout; with
    `layers`, only that many blocks run and the residual stream after them is returned instead of logits."""
    edit = edit or (lambda site, x: x)
    table = weight(_orig(inner.tok_embed), "weight")
    pos = weight(_orig(inner.pos), "weight")[..., : tokens.shape[-1], :]  # (members) pos d_model
    rows = _distinct_rows(tokens, len(table)) if distinct else None
    if rows is None:
        x = _embed(table, tokens) + (pos if pos.ndim == 2 else pos[:, None])
    else:
        unique, inverse = rows
        first = table[unique % len(table)] + pos[unique // len(table)]  # distinct d_model
        x = first[inverse]
    x = edit((0, "pre"), x)
    blocks = [_inner(block) for block in inner.layers][:layers]
    for i, block in enumerate(blocks):
        attn, mlp = block.attn._original_component, block.mlp._original_component
        last = last_only and i == len(blocks) - 1  # only the answer position's query and MLP reach the logits read
        z = partial(edit, (i, "z"))
        if i == 0 and rows is not None:
            out = _attention(attn, _norm(_orig(block.ln1), first, weight), weight, last=last, index=rows[1], edit=z)
        else:
            out = _attention(attn, _norm(_orig(block.ln1), x, weight), weight, last=last, edit=z)
        x = edit((i, "mid"), (x[..., -1:, :] if last else x) + out)
        hidden = edit((i, "mlp_post"), mlp.act(_linear(_orig(mlp.fc_in), _norm(_orig(block.ln2), x, weight), weight)))
        x = edit((i, "post"), x + edit((i, "mlp_out"), _linear(_orig(mlp.fc_out), hidden, weight)))
    if layers is not None:
        return x
    if last_only:
        x = x[..., -1, :]
    return _linear(_orig(inner.head), _norm(_orig(inner.ln_out), x, weight), weight)


def _distinct_rows(tokens: torch.Tensor, vocab: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The distinct (token, position) ids of `tokens` [batch, pos] and each row's index into them, when the
    distinct pairs are at most a quarter of the rows (else None: the saving would not pay for the gather)."""
    ids = tokens + vocab * torch.arange(tokens.shape[-1], device=tokens.device)
    unique, inverse = torch.unique(ids, return_inverse=True)
    return (unique, inverse) if 4 * len(unique) <= ids.numel() else None


def _embed(table: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    if table.ndim == 2:
        return F.embedding(tokens, table)
    return table[torch.arange(len(table), device=tokens.device).view(-1, *[1] * (tokens.ndim - 1)), tokens]


def _linear(module: torch.nn.Module, x: torch.Tensor, weight: Weight) -> torch.Tensor:
    w, b = weight(module, "weight"), weight(module, "bias")
    if w.ndim == 2:
        return F.linear(x, w, b)
    flat = x.reshape(len(w), -1, x.shape[-1])  # members rows in: one weight matrix per member
    if b is None:
        out = torch.bmm(flat, w.mT)
    elif b.ndim == 1:  # a bias shared by every member
        out = torch.bmm(flat, w.mT) + b
    else:
        out = torch.baddbmm(b.unsqueeze(1), flat, w.mT)
    return out.view(*x.shape[:-1], w.shape[1])


def _norm(module: torch.nn.Module, x: torch.Tensor, weight: Weight) -> torch.Tensor:
    """LayerNorm, RMSNorm or none, fused; per-member gains and biases are applied after the normalisation."""
    if isinstance(module, torch.nn.Identity):
        return x
    w = weight(module, "weight")
    layer = isinstance(module, torch.nn.LayerNorm)
    b = weight(module, "bias") if layer else None
    shape = (x.shape[-1],)
    if w.ndim == 1:
        return F.layer_norm(x, shape, w, b, module.eps) if layer else F.rms_norm(x, shape, w, module.eps)
    normed = F.layer_norm(x, shape, eps=module.eps) if layer else F.rms_norm(x, shape, eps=module.eps)
    lead = (len(w), *[1] * (x.ndim - 2), -1)
    normed = normed * w.view(lead)
    return normed if b is None else normed + (b if b.ndim == 1 else b.view(lead))


def _attention(
    attn: Any, x: torch.Tensor, weight: Weight, *, last: bool = False, index: torch.Tensor | None = None,
    edit: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Causal multi-head attention (grouped key/value heads repeated) through scaled_dot_product_attention; with
    `last`, only the last position attends (to every position). With `index` [batch, pos], `x` holds distinct
    rows [distinct, d_model] and each position's query, key and value are gathered from their projections.
    `edit` sees each head's output z [..., pos, heads, d_head] (hook_z's layout) before the output projection."""

    def project(linear: Any, heads: int, queries: bool = False) -> torch.Tensor:
        source = x[..., -1:, :] if queries and last and index is None else x
        out = _linear(_orig(linear), source, weight)
        if index is not None:
            out = out[index[..., -1:] if queries and last else index]
        return rearrange(out, "... s (h e) -> ... h s e", h=heads)

    q = project(attn.q, attn.n_heads, queries=True)
    k, v = project(attn.k, attn.n_kv_heads), project(attn.v, attn.n_kv_heads)
    if attn.kv_repeats > 1:
        k, v = k.repeat_interleave(attn.kv_repeats, dim=-3), v.repeat_interleave(attn.kv_repeats, dim=-3)
    lead = q.shape[:-3]
    q, k, v = (t.reshape(-1, *t.shape[-3:]) for t in (q, k, v))  # batch heads pos e: the fused CPU kernel wants 4-D
    out = F.scaled_dot_product_attention(q, k, v, is_causal=not last, scale=1.0 / attn.scale)
    z = rearrange(out.view(*lead, *q.shape[1:]), "... h s e -> ... s h e")
    if edit is not None:
        z = edit(z)
    return _linear(_orig(attn.o), rearrange(z, "... s h e -> ... s (h e)"), weight)


def _orig(bridge_component: Any) -> torch.nn.Module:
    """The plain torch module a bridge component wraps (its parameters are the bridge's)."""
    return bridge_component._original_component


def _inner(block: Any) -> Any:
    return block._original_component
