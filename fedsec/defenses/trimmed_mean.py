"""Coordinate-wise trimmed mean (Yin et al., 2018), as Flower's ``aggregate_trimmed_avg``."""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor

from fedsec.defenses.base import (
    Decision,
    Defense,
    DefenseParams,
    Kind,
    UpdateBatch,
    coordinate_contributions,
    register,
)


BLOCK_VALUES = 1 << 21
"""Values per block of coordinates that :func:`trimmed_mean` selects in at a time (8 MiB of float32)."""


def trimmed_mean(rows: Tensor, cut: int) -> tuple[Tensor, Tensor]:
    """Per coordinate of ``rows`` (n, d), the mean of the values left once the ``cut`` smallest
    and ``cut`` largest are dropped, (d,); and each row's mass in it
    (:func:`~fedsec.defenses.base.coordinate_contributions`), (n,).

    Selections (``topk``) instead of a sort, which costs about twice as much on CPU. They run
    on blocks of coordinates copied to (block, n), so that each coordinate's n values are
    contiguous and a block stays in cache (docs/performance.md). The kept values come from the
    same selections as their rows, so ties are resolved once and the contributions stay exact.
    """
    n, d = rows.shape
    kept = n - 2 * cut
    aggregate = rows.new_empty(d)
    contributions = rows.new_zeros(n)
    width = max(1, BLOCK_VALUES // n)
    for start in range(0, d, width):
        block = rows[:, start : start + width].T.contiguous()
        if kept <= cut:
            # Few values kept (the median): select them directly, the n - cut smallest, then
            # the largest of those.
            lower = block.topk(n - cut, dim=1, largest=False, sorted=False)
            middle = lower.values.topk(kept, dim=1, sorted=False)
            aggregate[start : start + width] = middle.values.mean(dim=1)
            owners = lower.indices.gather(1, middle.indices)
            contributions += coordinate_contributions(n, owners, middle.values / kept)
            continue
        if cut:
            # Zero the tails in the block. The -inf marks keep the smallest values out of the
            # largest ones when values tie (rows are finite: replies are validated).
            smallest = block.topk(cut, dim=1, largest=False, sorted=False).indices
            block.scatter_(1, smallest, -math.inf)
            largest = block.topk(cut, dim=1, sorted=False).indices
            block.scatter_(1, largest, 0.0).scatter_(1, smallest, 0.0)
        aggregate[start : start + width] = block.sum(dim=1) / kept
        # Summing |block| over coordinates is coordinate_contributions of the kept parts.
        contributions += torch.linalg.vector_norm(block, ord=1, dim=0) / kept
    return aggregate, contributions


@register("trimmed-mean")
class TrimmedMean(Defense):
    """Per coordinate, drop the ``int(beta * n)`` smallest and largest values and average the rest.

    Example counts are ignored (Flower's ``FedTrimmedAvg`` convention).
    """

    kind = Kind.AGGREGATE
    rejects = False
    rows_reason = "coordinate-wise order statistics"

    class Params(DefenseParams):
        beta: float = Field(
            0.2, ge=0.0, lt=0.5, description="Fraction of rows cut at each end, per coordinate."
        )

    params: Params

    def minimum_rows(self) -> int:
        """With ``beta > 0``, ``ceil(1 / beta)``: the fewest rows of which ``int(beta * n) >= 1``
        is cut at each end. Yin et al. (ICML 2018) tolerate a ``beta`` fraction of Byzantine
        rows; on fewer rows nothing would be cut and the rule would be the plain mean.
        ``beta = 0`` asks for the plain mean: 1.
        """
        return math.ceil(1 / self.params.beta) if self.params.beta > 0 else 1

    def decide(self, batch: UpdateBatch) -> Decision:
        cut = int(self.params.beta * batch.n)
        aggregate, contributions = trimmed_mean(batch.updates, cut)
        return Decision(aggregate=aggregate, contributions=contributions, info={"cut": cut})
