"""Coordinate-wise trimmed mean (Yin et al., 2018), as Flower's ``aggregate_trimmed_avg``."""

from __future__ import annotations

from pydantic import Field

from fedsec.defenses.base import Decision, Defense, DefenseParams, Kind, UpdateBatch, register


@register("trimmed-mean")
class TrimmedMean(Defense):
    """Per coordinate, drop the ``int(beta * n)`` smallest and largest values and average the rest.

    Example counts are ignored (Flower's ``FedTrimmedAvg`` convention).
    """

    kind = Kind.AGGREGATE

    class Params(DefenseParams):
        beta: float = Field(
            0.2, ge=0.0, lt=0.5, description="Fraction of rows cut at each end, per coordinate."
        )

    params: Params

    def decide(self, batch: UpdateBatch) -> Decision:
        n = batch.n
        cut = int(self.params.beta * n)
        middle = batch.updates.sort(dim=0).values[cut : n - cut]
        return Decision(aggregate=middle.mean(dim=0), info={"cut": cut})
