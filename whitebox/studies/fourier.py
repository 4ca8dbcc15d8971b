"""Fourier progress measures for modular addition (Nanda et al. 2023, "Progress measures for grokking").

A model that has grokked `a + b mod p` represents inputs by a few key frequencies w_k = 2 pi k / p
and builds its logits from cos(w_k (a + b - c)). These functions find those frequencies and
measure how much of the model's behaviour they carry.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from whitebox.tasks import answer_logits


def fourier_basis(p: int) -> torch.Tensor:
    """Orthonormal rows over Z_p: the constant, then cos and sin of each frequency k = 1..p//2."""
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, p // 2 + 1):
        rows += [torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)]
    basis = torch.stack(rows[:p])  # p p
    return basis / basis.norm(dim=1, keepdim=True)


def frequency_norms(embedding: torch.Tensor) -> torch.Tensor:
    """Norm of each frequency k = 1..p//2 in an embedding [p, d] (cos and sin parts together)."""
    p = embedding.shape[0]
    coeffs = fourier_basis(p).to(embedding) @ embedding  # basis d
    pairs = coeffs[1 : 1 + 2 * (p // 2)]
    if p % 2 == 0:  # the Nyquist frequency has a cos row only
        pairs = torch.cat([pairs, torch.zeros_like(coeffs[:1])])
    return rearrange(pairs, "(k two) d -> k (two d)", two=2).norm(dim=1)


def key_frequencies(norms: torch.Tensor, n: int) -> list[int]:
    """The n strongest frequencies (1-based k), strongest first."""
    return [int(i) + 1 for i in torch.argsort(norms, descending=True)[:n]]


def gini(values: torch.Tensor) -> float:
    """Gini coefficient of non-negative values: 0 for an even spread, near 1 when a few dominate."""
    x = torch.sort(values.flatten().double().abs()).values
    n = x.numel()
    if n == 0 or float(x.sum()) == 0:
        return 0.0
    ranks = torch.arange(1, n + 1, dtype=torch.float64)
    return float((2 * (ranks * x).sum()) / (n * x.sum()) - (n + 1) / n)


def sum_directions(p: int, freqs: list[int]) -> torch.Tensor:
    """Orthonormal columns [p*p, 2K] of cos/sin(w_k (a + b)) over all pairs (row-major a, b)."""
    a, b = (t.flatten().double() for t in torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij"))
    cols = []
    for k in freqs:
        w = 2 * math.pi * k / p
        cols += [torch.cos(w * (a + b)), torch.sin(w * (a + b))]
    dirs = torch.stack(cols, dim=1)
    return dirs / dirs.norm(dim=0, keepdim=True)


def fourier_losses(logits: torch.Tensor, freqs: list[int], train_mask: torch.Tensor) -> dict[str, float]:
    """Loss with only the key frequencies kept (all pairs; training pairs) and with them removed (training pairs).

    `logits` is [p*p, p] over all pairs in row-major order (answer tokens only). Restricted loss
    falls as the generalising circuit forms; excluded loss rises once the training set is fitted
    through the key frequencies rather than memorised. `restricted_loss` needs the answers of
    unseen pairs; `restricted_loss_train` and `excluded_loss` read the training answers only, so a
    practitioner without held-out labels can compute them (the key part is projected from the
    model's logits on every input, which needs no answer).
    """
    pairs, p = logits.shape
    assert pairs == p * p, f"logits must cover all {p * p} pairs, got {pairs}"
    u = sum_directions(p, freqs).to(logits.device)  # pairs 2K
    flat = logits.double()
    mean = flat.mean(dim=0, keepdim=True)
    key_part = u @ (u.T @ (flat - mean))
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    target = ((a + b) % p).flatten().to(logits.device)
    restricted = F.cross_entropy(mean + key_part, target, reduction="none")
    excluded = F.cross_entropy((flat - key_part)[train_mask], target[train_mask])
    return {
        "restricted_loss": float(restricted.mean()),
        "restricted_loss_train": float(restricted[train_mask].mean()),
        "excluded_loss": float(excluded),
    }


@torch.no_grad()
def progress_measures(model: torch.nn.Module, p: int, train_mask: torch.Tensor, n_key: int = 5) -> dict[str, float]:
    """Train/test fit, Fourier sparsity of the embedding, restricted/excluded loss and weight norm."""
    device = next(model.parameters()).device
    a, b = (t.flatten() for t in torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij"))
    tokens = torch.stack([a, b, torch.full_like(a, p)], dim=1).to(device)  # pairs 3
    was_training = model.training
    model.eval()
    logits = answer_logits(model, tokens)[:, :p].float()  # pairs p: answer tokens only
    model.train(was_training)
    target = ((a + b) % p).to(device)
    train_mask = train_mask.to(device)
    loss = F.cross_entropy(logits, target, reduction="none")
    hit = (logits.argmax(-1) == target).float()
    norms = frequency_norms(model.W_E[:p].detach().double())
    keys = key_frequencies(norms, n_key)
    top_share = float(norms[[k - 1 for k in keys]].pow(2).sum() / norms.pow(2).sum())
    return {
        "train_acc": float(hit[train_mask].mean()),
        "train_loss": float(loss[train_mask].mean()),
        "test_acc": float(hit[~train_mask].mean()),
        "test_loss": float(loss[~train_mask].mean()),
        "test_logprob": float(-loss[~train_mask].mean()),
        **fourier_losses(logits, keys, train_mask),
        "fourier_gini": gini(norms),
        "fourier_key_share": top_share,
        **{f"key_freq_{i + 1}": float(k) for i, k in enumerate(keys)},
        "weight_norm": float(torch.sqrt(sum(p_.detach().float().pow(2).sum() for p_ in model.parameters()))),
    }
