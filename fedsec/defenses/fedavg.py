"""FedAvg: the example-weighted mean of the accepted updates (McMahan et al., 2017)."""

from __future__ import annotations

from dataclasses import replace

from fedsec.defenses.base import Decision, Defense, Kind, UpdateBatch, register
from fedsec.defenses.scalars import Scalar, ScalarBatch


@register("fedavg")
class FedAvg(Defense):
    """Example-weighted mean of the accepted rows; no robustness, the baseline.

    No minimum beyond one row. Reads no scalar of the rows, so it runs on ciphertexts.
    """

    kind = Kind.AGGREGATE
    rejects = False

    def decide(self, batch: UpdateBatch) -> Decision:
        return Decision(aggregate=batch.mean_of_accepted())

    def needs(self) -> frozenset[Scalar]:
        """Nothing: the coefficients are the example counts."""
        return frozenset()

    def on_scalars(self, batch: ScalarBatch) -> ScalarBatch:
        """Coefficients ``n_i / sum_j n_j`` over the accepted rows."""
        return replace(batch, coefficients=batch.mean_coefficients())
