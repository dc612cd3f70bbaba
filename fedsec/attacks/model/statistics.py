"""Coordinate-wise statistics of a set of benign updates."""

from __future__ import annotations

from torch import Tensor


def coordinate_std(updates: Tensor) -> Tensor:
    """Per-coordinate standard deviation of ``updates`` ``(m, d)``, ``(d,)``.

    Unbiased (divides by m − 1) as in the papers' code; zeros when m = 1, where an
    attacker that only knows its own update sees no spread.
    """
    return updates.std(dim=0, correction=1 if updates.shape[0] > 1 else 0)
