"""Divide-and-Conquer (Shejwalkar & Houmansadr, NDSS 2021): spectral outlier removal."""

from __future__ import annotations

import torch
from pydantic import Field

from fedsec.defenses._math import TINY, random_coordinates
from fedsec.defenses.base import Decision, Defense, DefenseParams, Kind, UpdateBatch, register


@register("dnc")
class DnC(Defense):
    """Reject the rows that project most on the top singular direction of random sub-matrices.

    Each iteration draws ``subsample_dim`` coordinates (from the batch's generator),
    centres the sub-matrix, scores row i by its squared projection on the top right
    singular vector and marks the ``int(c * f)`` highest as outliers. A row is kept if
    no iteration marked it; the pipeline (or a later aggregator) averages the kept rows.
    Score: the sum over iterations of the projection score, divided by its largest value.
    """

    kind = Kind.SCREEN
    rows_reason = "an SVD of the rows on random coordinates"

    class Params(DefenseParams):
        f: int = Field(0, ge=0, description="Malicious clients assumed per round (count).")
        c: float = Field(
            1.0, gt=0.0, description="Filtering fraction: int(c * f) rows removed per iteration."
        )
        subsample_dim: int = Field(
            10_000, ge=1, description="Coordinates drawn per iteration (count; all if d is less)."
        )
        iterations: int = Field(5, ge=1, description="Number of random sub-samplings.")

    params: Params

    def removed(self) -> int:
        """Rows marked as outliers per iteration, ``int(c * f)`` (count)."""
        return int(self.params.c * self.params.f)

    def minimum_rows(self) -> int:
        """``int(c * f) + 1``: removing ``c * f`` rows (Shejwalkar & Houmansadr, NDSS 2021,
        Algorithm 2) must leave at least one."""
        return self.removed() + 1

    def decide(self, batch: UpdateBatch) -> Decision:
        n, d, rows = batch.n, batch.d, batch.updates
        removed = self.removed()
        keep = torch.ones_like(batch.accepted)
        total = rows.new_zeros(n)
        sampled = self.params.subsample_dim < d  # otherwise every iteration would be the same
        for _ in range(self.params.iterations if sampled else 1):
            if sampled:
                generator = batch.require_generator(self.name)
                picked = random_coordinates(d, self.params.subsample_dim, generator, rows.device)
                sub = rows.index_select(1, picked)
            else:
                sub = rows
            centred = sub - sub.mean(dim=0)
            direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
            score = (centred @ direction).square()
            total += score
            if removed > 0:
                keep.index_fill_(0, score.topk(removed).indices, False)
        score = total / total.max().clamp_min(TINY)
        return Decision(keep=keep, score=score, info={"removed_per_iteration": removed})
