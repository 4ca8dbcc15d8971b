"""The plain-torch reference the benchmarks hold whitebox against: what a researcher would write for the same model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from whitebox.config import ModelConfig

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


def norm(cfg: ModelConfig) -> nn.Module:
    """LayerNorm, or none (the grokking model's); other norms have no reference here."""
    if cfg.normalization not in (None, "LN", "none"):
        raise SystemExit(f"the plain-torch reference has LayerNorm or none, not {cfg.normalization!r}")
    return nn.Identity() if cfg.normalization == "none" else nn.LayerNorm(cfg.d_model)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d_model, d_mlp = cfg.d_model, cfg.mlp_dim
        if cfg.act_fn not in ACTIVATIONS:
            raise SystemExit(f"the plain-torch reference has {sorted(ACTIVATIONS)} activations, not {cfg.act_fn!r}")
        self.ln1, self.ln2 = norm(cfg), norm(cfg)
        self.qkv, self.out = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_mlp), ACTIVATIONS[cfg.act_fn](), nn.Linear(d_mlp, d_model))
        self.n_heads = cfg.n_heads

    def forward(self, x: torch.Tensor, answer_only: bool = False) -> torch.Tensor:
        """The block; with answer_only, its output at the last position only ([b, 1, d]: its query and MLP there)."""
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, s, 3, self.n_heads, d // self.n_heads).unbind(2)  # each b s h e
        if answer_only:
            x, q = x[:, -1:], q[:, -1:]
        att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=not answer_only)
        x = x + self.out(att.transpose(1, 2).reshape(b, x.shape[1], d))
        return x + self.mlp(self.ln2(x))


class PlainGPT(nn.Module):
    """The reference: what a researcher would write in plain torch for the same model.

    answer_only: the last block computes only the answer position (its query and MLP), the shortcut whitebox's
    fast path takes when only the answer is read: the floor of that computation.
    """

    def __init__(self, cfg: ModelConfig, answer_only: bool = False):
        super().__init__()
        self.answer_only = answer_only
        self.embed, self.pos = nn.Embedding(cfg.d_vocab, cfg.d_model), nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln, self.unembed = norm(cfg), nn.Linear(cfg.d_model, cfg.d_vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits at the answer position only: [batch, vocab]."""
        x = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for i, block in enumerate(self.blocks):
            x = block(x, answer_only=self.answer_only and i == len(self.blocks) - 1)
        return self.unembed(self.ln(x[:, -1]))

    @torch.no_grad()
    def copy_from(self, bridge: nn.Module) -> PlainGPT:
        """Take a native bridge's weights (q, k, v concatenated into the fused projection)."""
        inner = bridge.original_model
        self.embed.weight.copy_(inner.tok_embed._original_component.weight)
        self.pos.weight.copy_(inner.pos._original_component.weight)
        for ours, theirs in zip(self.blocks, inner.layers):
            theirs = theirs._original_component
            attn, mlp = theirs.attn._original_component, theirs.mlp._original_component
            lin = [getattr(attn, n)._original_component for n in "qkv"]
            ours.qkv.weight.copy_(torch.cat([m.weight for m in lin]))
            ours.qkv.bias.copy_(torch.cat([m.bias for m in lin]))
            ours.out.load_state_dict(attn.o._original_component.state_dict())
            ours.ln1.load_state_dict(theirs.ln1._original_component.state_dict())
            ours.ln2.load_state_dict(theirs.ln2._original_component.state_dict())
            ours.mlp[0].load_state_dict(mlp.fc_in._original_component.state_dict())
            ours.mlp[2].load_state_dict(mlp.fc_out._original_component.state_dict())
        self.ln.load_state_dict(inner.ln_out._original_component.state_dict())
        self.unembed.weight.copy_(inner.head._original_component.weight)
        return self
