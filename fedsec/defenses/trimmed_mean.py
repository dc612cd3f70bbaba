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


def trimmed_mean(rows: Tensor, cut: int) -> tuple[Tensor, Tensor]:
    """Per coordinate of ``rows`` (n, d), the mean of the values left once the ``cut`` smallest
    and ``cut`` largest are dropped, (d,); and each row's mass in it
    (:func:`~fedsec.defenses.base.coordinate_contributions`), (n,).

    Selections (``topk``) instead of a sort: a sort along the client axis costs about twice
    as much on CPU (docs/performance.md). The kept values come from the same selections as
    their rows, so ties are resolved once and the contributions stay exact.
    """
    n = rows.shape[0]
    kept = n - 2 * cut
    if kept <= cut:
        # Few values kept (the median): select them directly, the n - cut smallest, then the
        # largest of those.
        lower = rows.topk(n - cut, dim=0, largest=False, sorted=False)
        middle = lower.values.topk(kept, dim=0, sorted=False)
        parts = middle.values / kept
        owners = lower.indices.gather(0, middle.indices)
        return middle.values.mean(dim=0), coordinate_contributions(n, owners, parts)
    masked = rows
    if cut:
        # Short tails: zero them in a copy. The -inf marks keep the smallest values out of the
        # largest ones when values tie (rows are finite: replies are validated).
        smallest = rows.topk(cut, dim=0, largest=False, sorted=False).indices
        masked = rows.scatter(0, smallest, -math.inf)
        largest = masked.topk(cut, dim=0, sorted=False).indices
        masked = masked.scatter_(0, largest, 0.0).scatter_(0, smallest, 0.0)
    # sum |masked| over coordinates is coordinate_contributions of the kept parts, without indices.
    return masked.sum(dim=0) / kept, torch.linalg.vector_norm(masked, ord=1, dim=1) / kept


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
