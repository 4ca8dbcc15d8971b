"""Randomness from integer seeds: any draw can be regenerated anywhere from its seed alone."""

from __future__ import annotations

import numpy as np
import torch


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys (run seed, step, member, ...)."""
    return int(np.random.SeedSequence([k & 0xFFFFFFFFFFFFFFFF for k in keys]).generate_state(1, np.uint64)[0] >> 1)


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator on `device` seeded with `seed`; never the global RNG."""
    return torch.Generator(device=device).manual_seed(seed)


def seeded_normal(seed: int, n: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """n standard-normal values determined by `seed`: bit-identical on every call on the same device."""
    return torch.randn(n, generator=generator(seed, device), device=device, dtype=dtype)


def gumbel(shape: tuple[int, ...], gen: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    """Gumbel(0, 1) noise; argmax(logits / T + gumbel) samples softmax(logits / T)."""
    u = torch.rand(shape, generator=gen, device=device).clamp_(min=1e-20, max=1 - 1e-7)
    return -torch.log(-torch.log(u))
