"""Dirichlet label skew: per-class client shares drawn from Dirichlet(alpha)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from fedsec.data.datasets import MAX_EXAMPLES
from fedsec.data.partitioners.base import PARTITIONERS, Partitioner

if TYPE_CHECKING:
    from flwr_datasets.partitioner import DirichletPartitioner as FlwrDirichlet


@PARTITIONERS.register("dirichlet")
class DirichletPartitioner(Partitioner):
    """Per-class client shares drawn from Dirichlet(alpha); smaller alpha is more skewed."""

    name: Literal["dirichlet"] = "dirichlet"
    alpha: float = Field(0.5, gt=0, description="Dirichlet concentration (> 0, dimensionless).")
    min_partition_size: int = Field(
        10, ge=0, le=MAX_EXAMPLES,
        description="Redraw until every client has at least this many examples "
        "(num_clients × this must not exceed the training set).",
    )
    self_balancing: bool = Field(
        False, description="Stop giving a class to clients that already hold more than the average."
    )

    min_examples_set_by: ClassVar[str] = "data.partitioner.min_partition_size"

    def flwr_partitioner(self, num_clients: int, seed: int) -> FlwrDirichlet:
        from flwr_datasets.partitioner import DirichletPartitioner as FlwrDirichlet

        return FlwrDirichlet(
            num_partitions=num_clients, partition_by="label", alpha=self.alpha,
            min_partition_size=self.min_partition_size, self_balancing=self.self_balancing, seed=seed,
        )

    def min_examples_per_client(self) -> int:
        return max(1, self.min_partition_size)
