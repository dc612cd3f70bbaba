"""Coordinate-wise median (Yin et al., 2018), as Flower's ``aggregate_median``."""

from __future__ import annotations

from fedsec.defenses.base import Decision, Defense, Kind, UpdateBatch, register
from fedsec.defenses.trimmed_mean import trimmed_mean


@register("median")
class Median(Defense):
    """Coordinate-wise median of the accepted rows; example counts are ignored.

    For an even number of rows each coordinate is the mean of its two middle values
    (numpy's and Flower's convention). No minimum beyond one row: the median of n rows
    stays within the range of the honest ones while fewer than n/2 are Byzantine (Yin et al.).
    """

    kind = Kind.AGGREGATE
    rejects = False
    rows_reason = "coordinate-wise order statistics"

    def decide(self, batch: UpdateBatch) -> Decision:
        """The trimmed mean that keeps the middle value (odd n) or the two middle values (even n):
        each coordinate's value comes from those rows."""
        aggregate, contributions = trimmed_mean(batch.updates, (batch.n - 1) // 2)
        return Decision(aggregate=aggregate, contributions=contributions)
