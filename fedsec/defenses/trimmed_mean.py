"""Coordinate-wise trimmed mean (Yin et al., 2018), as Flower's ``aggregate_trimmed_avg``."""

from __future__ import annotations

import math

from pydantic import Field

from fedsec.defenses.base import Decision, Defense, DefenseParams, Kind, UpdateBatch, register


@register("trimmed-mean")
class TrimmedMean(Defense):
    """Per coordinate, drop the ``int(beta * n)`` smallest and largest values and average the rest.

    Example counts are ignored (Flower's ``FedTrimmedAvg`` convention).
    """

    kind = Kind.AGGREGATE
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
        n = batch.n
        cut = int(self.params.beta * n)
        middle = batch.updates.sort(dim=0).values[cut : n - cut]
        return Decision(aggregate=middle.mean(dim=0), info={"cut": cut})
