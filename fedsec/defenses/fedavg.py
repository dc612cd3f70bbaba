"""FedAvg: the example-weighted mean of the accepted updates (McMahan et al., 2017)."""

from __future__ import annotations

from fedsec.defenses.base import Decision, Defense, Kind, UpdateBatch, register


@register("fedavg")
class FedAvg(Defense):
    """Example-weighted mean of the accepted rows; no robustness, the baseline.

    No minimum beyond one row.
    """

    kind = Kind.AGGREGATE

    def decide(self, batch: UpdateBatch) -> Decision:
        return Decision(aggregate=batch.mean_of_accepted())
