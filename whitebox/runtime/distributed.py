"""torch.distributed for a run launched by torchrun: one process per device, rank 0 the only writer.

Without torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) every function is a no-op for a
world of one, so a plain `whitebox run` behaves exactly as it does without this module.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch
import torch.distributed as dist

_writing = 0  # depth of main_only blocks: only the outermost one synchronises


def launched() -> bool:
    """Whether torchrun (or anything setting its variables) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> None:
    """Join torchrun's process group once (NCCL for a CUDA device, gloo otherwise); a no-op outside torchrun."""
    if not launched() or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend, device_id=torch.device("cuda", local_rank()) if backend == "nccl" else None)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if not active():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[local_rank()])
    else:
        dist.barrier()


@contextlib.contextmanager
def main_only(wait: bool = True) -> Iterator[bool]:
    """Around a write: yields True on the main rank only; every rank waits at the end of the outermost
    block, so what it wrote is there for all of them after it (the run directory is shared).

    With wait=False (the main rank's own records, such as metrics lines) nobody waits, and nothing nested does.
    """
    global _writing
    _writing += 1
    try:
        yield is_main()
    finally:
        _writing -= 1
    if wait and _writing == 0:
        barrier()


def shard(n: int) -> slice:
    """This rank's contiguous share of n items (sizes differ by at most one; rank order is the global order)."""
    r, w = rank(), world_size()
    return slice(n * r // w, n * (r + 1) // w)


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """Every rank's `local` rows (its shard(n) of n) concatenated in global order, on every rank: [n, ...]."""
    if not active():
        return local
    w = world_size()
    counts = [n * (r + 1) // w - n * r // w for r in range(w)]
    padded = torch.zeros((max(counts), *local.shape[1:]), dtype=local.dtype, device=_device())
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(w)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:count] for part, count in zip(parts, counts)]).to(local.device)


def average_gradients(params: list[torch.nn.Parameter], weight: float, extra: torch.Tensor) -> torch.Tensor:
    """Replace each rank's gradients by their weighted sum over ranks (weight: this rank's share of the
    global batch), in one flat all-reduce that also sums weight * `extra` (small statistics); returns that sum.

    A parameter without a gradient keeps none (which ones have one is the same on every rank).
    """
    with_grad = [p for p in params if p.grad is not None]
    flat = torch.cat([p.grad.detach().flatten().float() for p in with_grad] + [extra.detach().flatten().float()])
    flat *= weight
    dist.all_reduce(flat)
    offset = 0
    for p in with_grad:
        p.grad = flat[offset : offset + p.numel()].view_as(p).to(p.grad.dtype)
        offset += p.numel()
    return flat[offset:]


def shard_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This rank's rows of a global batch (the batch itself in a single process)."""
    if not active():
        return batch
    rows = shard(len(next(iter(batch.values()))))
    return {k: v[rows] for k, v in batch.items()}


def weighted_mean(stats: dict[str, float], weight: float) -> dict[str, float]:
    """Per-rank means of a shard (weight: its share of the global batch) turned into global means."""
    if not active():
        return stats
    values = torch.tensor([v * weight for v in stats.values()], dtype=torch.float64, device=_device())
    dist.all_reduce(values)
    return dict(zip(stats, values.tolist()))



def any_rank(flag: bool) -> bool:
    """Whether `flag` is true on any rank, so that every rank takes the same branch."""
    if not active():
        return flag
    value = torch.tensor([float(flag)], device=_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _device() -> torch.device:
    return torch.device("cuda", local_rank()) if dist.get_backend() == "nccl" else torch.device("cpu")
