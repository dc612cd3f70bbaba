"""Coordinate-wise statistics of a set of benign updates."""

from __future__ import annotations

from torch import Tensor


def coordinate_std(updates: Tensor, unbiased: bool = True) -> Tensor:
    """Per-coordinate standard deviation of ``updates`` ``(k, d)``, ``(d,)``.

    ``unbiased`` divides by k − 1 (``torch.std``, as in Shejwalkar & Houmansadr's code),
    otherwise by k (``np.var``, as in Baruch et al.'s code). Zeros when k = 1, where an
    attacker that only knows its own update sees no spread.
    """
    return updates.std(dim=0, correction=1 if unbiased and updates.shape[0] > 1 else 0)
