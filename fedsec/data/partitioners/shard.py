"""Shards (McMahan et al.): sort by label, cut into shards, deal shards to clients."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from fedsec.data.datasets import MAX_EXAMPLES
from fedsec.data.partitioners.base import PARTITIONERS, Partitioner

if TYPE_CHECKING:
    from flwr_datasets.partitioner import ShardPartitioner as FlwrShard


@PARTITIONERS.register("shard")
class ShardPartitioner(Partitioner):
    """McMahan et al.'s shards: sort by label, cut into shards, deal shards to clients."""

    name: Literal["shard"] = "shard"
    shards_per_client: int = Field(
        2, ge=1, le=MAX_EXAMPLES, description="Shards dealt to each client (at least one example each)."
    )
    shard_size: int | None = Field(
        None, ge=1, le=MAX_EXAMPLES,
        description="Examples per shard (num_clients × shards_per_client × this must not exceed the training "
        "set); default: as large as the data allows.",
    )

    min_examples_set_by: ClassVar[str] = "shards_per_client × shard_size"

    def flwr_partitioner(self, num_clients: int, seed: int) -> FlwrShard:
        from flwr_datasets.partitioner import ShardPartitioner as FlwrShard

        return FlwrShard(
            num_partitions=num_clients, partition_by="label", num_shards_per_partition=self.shards_per_client,
            shard_size=self.shard_size, seed=seed,
        )

    def min_examples_per_client(self) -> int:
        return self.shards_per_client * (self.shard_size or 1)
