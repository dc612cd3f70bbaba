"""Partitioners, one per module, registered by scenario name in :data:`PARTITIONERS` when imported here."""

from fedsec.data.partitioners.base import PARTITIONERS, Partitioner
from fedsec.data.partitioners.dirichlet import DirichletPartitioner
from fedsec.data.partitioners.iid import IidPartitioner
from fedsec.data.partitioners.pathological import PathologicalPartitioner
from fedsec.data.partitioners.shard import ShardPartitioner
from fedsec.data.partitioners.size_skewed import SizeSkewedPartitioner

__all__ = [
    "PARTITIONERS",
    "DirichletPartitioner",
    "IidPartitioner",
    "PathologicalPartitioner",
    "Partitioner",
    "ShardPartitioner",
    "SizeSkewedPartitioner",
]
