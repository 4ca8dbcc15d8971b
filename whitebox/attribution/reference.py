"""What mean and resample ablation put in a component's place: reference activations, aligned at the answer when padded.

Reference inputs of unequal lengths are left-padded, so every answer is the last position (as in
whitebox.tasks.pairs). Position p of an ablated input T tokens long then reads the reference at
the same distance T - 1 - p before the answer: mean ablation averages the reference rows that have
a real token there, resample ablation takes its drawn row's activation there. Where no reference
row (or not the drawn one) reaches that far back, the average over all their real tokens stands
in. A pair therefore gets the same ablation alone as in a padded batch of pairs of other lengths.
Without a mask every token is real and the reference must be as long as the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Reference:
    """Activations of reference inputs at unit sites {site: [batch pos ...]}, and their attention mask (None: all real)."""

    acts: dict[str, torch.Tensor]
    mask: torch.Tensor | None = None  # batch pos, 1: a real token (left padding only)

    def __len__(self) -> int:
        return int(next(iter(self.acts.values())).shape[0])

    def mean(self, name: str, length: int) -> torch.Tensor:
        """[1 length ...]: the activation at `name` averaged over the reference, per distance from the answer."""
        acts = self._unpadded(name, length)
        if acts is not None:
            return acts.mean(0, keepdim=True)
        return _masked_mean(self.acts[name], self.mask, length)[None]

    def rows(self, name: str, idx: torch.Tensor, length: int) -> torch.Tensor:
        """[len(idx) length ...]: reference rows `idx` at `name`, each aligned at the answer (padding: its own mean)."""
        acts = self._unpadded(name, length)
        if acts is not None:
            return acts[idx.to(acts.device)]
        idx = idx.to(self.acts[name].device)
        return _own_rows(self.acts[name][idx], self.mask.to(idx.device)[idx], length)

    def zeros(self, name: str, length: int) -> torch.Tensor:
        """[1 length ...] zeros shaped as the activation at `name`."""
        act = self.acts[name]
        return act.new_zeros(1, length, *act.shape[2:])

    def _unpadded(self, name: str, length: int) -> torch.Tensor | None:
        """The activations when every reference token is real (they must then be `length` long); None when padded."""
        acts = self.acts[name]
        if self.mask is not None and not bool(self.mask.all()):
            return None
        if acts.shape[1] != length:
            raise ValueError(f"{name}: reference activations of {acts.shape[1]} positions do not match inputs of {length}; "
                             "pass reference inputs of the same length (or left-padded ones with their mask)")
        return acts


def as_reference(refs: dict[str, torch.Tensor] | Reference) -> Reference:
    """Reference activations as a Reference ({site: acts} of unpadded inputs as they are)."""
    return refs if isinstance(refs, Reference) else Reference(refs)


def _masked_mean(acts: torch.Tensor, mask: torch.Tensor, length: int) -> torch.Tensor:
    """[length ...]: the mean of acts [n pos ...] over the rows real at each distance from the answer; where none is,
    the mean over every real token."""
    kept, real, overall = _aligned(acts, mask, length)
    count = real.sum(0)  # length 1 ...
    return torch.where(count > 0, kept.sum(0) / count.clamp_min(1), overall.sum(0) / real.new_tensor(float(mask.sum())))


def _own_rows(acts: torch.Tensor, mask: torch.Tensor, length: int) -> torch.Tensor:
    """[n length ...]: each row of acts [n pos ...] aligned at the answer, its own mean over real tokens where padded."""
    kept, real, overall = _aligned(acts, mask, length)
    own = overall / mask.sum(1).to(overall).view(-1, *[1] * (overall.ndim - 1))
    return torch.where(real > 0, kept, own[:, None])


def _aligned(acts: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(acts with padding zeroed, mask as 1s, both right-aligned in `length` positions; each row's sum over real tokens)."""
    real = mask.to(acts.device, acts.dtype).view(*mask.shape, *[1] * (acts.ndim - 2))  # n pos 1 ...
    kept = acts * real
    sums = kept.sum(1)  # n ...
    extra = length - acts.shape[1]
    if extra > 0:  # the reference is shorter: nothing reaches the inputs' first positions
        kept = torch.cat([kept.new_zeros(kept.shape[0], extra, *kept.shape[2:]), kept], 1)
        real = torch.cat([real.new_zeros(real.shape[0], extra, *real.shape[2:]), real], 1)
    return kept[:, kept.shape[1] - length :], real[:, real.shape[1] - length :], sums
