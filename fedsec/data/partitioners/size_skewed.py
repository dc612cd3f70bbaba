"""Size skew: IID labels, partition sizes growing with the client id."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from fedsec.data.partitioners.base import PARTITIONERS, Partitioner

if TYPE_CHECKING:
    from flwr_datasets.partitioner import IdToSizeFncPartitioner


@PARTITIONERS.register("size-skewed")
class SizeSkewedPartitioner(Partitioner):
    """IID labels, client sizes growing linearly, quadratically or exponentially with the id."""

    name: Literal["size-skewed"] = "size-skewed"
    growth: Literal["linear", "square", "exponential"] = Field(
        "linear", description="How the partition size grows with the client id."
    )

    def flwr_partitioner(self, num_clients: int, seed: int) -> IdToSizeFncPartitioner:
        from flwr_datasets.partitioner import ExponentialPartitioner, LinearPartitioner, SquarePartitioner

        growth = {"linear": LinearPartitioner, "square": SquarePartitioner, "exponential": ExponentialPartitioner}
        return growth[self.growth](num_partitions=num_clients)
