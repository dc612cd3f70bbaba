"""IID: every client draws the same label distribution."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from fedsec.data.partitioners.base import PARTITIONERS, Partitioner

if TYPE_CHECKING:
    from flwr_datasets.partitioner import IidPartitioner as FlwrIid


@PARTITIONERS.register("iid")
class IidPartitioner(Partitioner):
    """Every client draws the same label distribution."""

    name: Literal["iid"] = "iid"

    def flwr_partitioner(self, num_clients: int, seed: int) -> FlwrIid:
        from flwr_datasets.partitioner import IidPartitioner as FlwrIid

        return FlwrIid(num_partitions=num_clients)
