"""Pathological label skew: each client holds examples of a few classes only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from fedsec.data.datasets import MAX_CLASSES
from fedsec.data.partitioners.base import PARTITIONERS, Partitioner

if TYPE_CHECKING:
    from flwr_datasets.partitioner import PathologicalPartitioner as FlwrPathological


@PARTITIONERS.register("pathological")
class PathologicalPartitioner(Partitioner):
    """Each client holds examples of only ``classes_per_client`` classes."""

    name: Literal["pathological"] = "pathological"
    classes_per_client: int = Field(
        2, ge=1, le=MAX_CLASSES, description="Distinct labels per client (at most the dataset's classes)."
    )
    class_assignment_mode: Literal["random", "deterministic", "first-deterministic"] = Field(
        "first-deterministic", description="How classes are assigned (flwr-datasets' modes)."
    )

    def flwr_partitioner(self, num_clients: int, seed: int) -> FlwrPathological:
        from flwr_datasets.partitioner import PathologicalPartitioner as FlwrPathological

        return FlwrPathological(
            num_partitions=num_clients, partition_by="label", num_classes_per_partition=self.classes_per_client,
            class_assignment_mode=self.class_assignment_mode, seed=seed,
        )

    def check(self, num_classes: int, dataset: str) -> list[str]:
        if self.classes_per_client <= num_classes:
            return []
        return [f"classes_per_client: {self.classes_per_client} is more than the {num_classes} classes of {dataset}"]
