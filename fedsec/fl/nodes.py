"""Which node carries each partition's messages, and what the server hears from a node before it trains.

Under the deployment engine a node holds its own partition, and the server learns which one by
asking every node once (:class:`QueriedNodes`). In the simulation ``fedsec run`` starts, nodes are
interchangeable virtual clients (:class:`VirtualClients`): each message names the partition its
node loads, so discovery and lookup cost nothing for clients that are never sampled.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fedsec.fl.aggregation import Aggregation
from fedsec.fl.protocol import ADDRESS_RECORD, METRICS_RECORD, PARTITION_KEY


class FederationError(RuntimeError):
    """The federation cannot run as configured (e.g. nodes do not match the scenario, or a run
    directory that cannot be resumed)."""


class Nodes(ABC):
    """Routes a round's partitions to nodes; the subclasses differ in how a node gets its partition."""

    def __init__(self, grid: Grid, aggregation: Aggregation, num_clients: int) -> None:
        self.grid = grid
        self.aggregation = aggregation
        self.num_clients = num_clients

    @abstractmethod
    def discover(self) -> None:
        """Before round 1: learn the connected nodes. Raises FederationError when they cannot
        serve the scenario's partitions."""

    @abstractmethod
    def route(self, partitions: Sequence[int]) -> dict[int, int]:
        """The node each of a round's distinct ``partitions`` is sent to, a different node for each;
        on return the aggregation has heard every one of them (:meth:`Aggregation.node_joined`)."""

    @abstractmethod
    def sender_handles(self) -> dict[int, int]:
        """A new run's opaque sender handle of every partition: a per-run random bijection onto
        ``0..num_clients-1``, which defenses that keep per-sender history see instead of client ids."""

    def address(self, partition: int) -> dict[str, ConfigRecord]:
        """Records that a message for ``partition`` carries besides its content."""
        return {}

    def ask(self, expected: dict[int, int | None]) -> dict[int, int]:
        """Send the aggregation's discovery query to each node of ``expected`` (node -> the partition
        it is to answer for, None: whichever it holds) and hand the aggregation each answer. Returns
        partition -> node; raises FederationError on an error reply or an answer for another partition."""
        queries = [
            Message(RecordDict({**self.aggregation.query_content(), **({} if p is None else self.address(p))}),
                    dst_node_id=node, message_type=MessageType.QUERY)
            for node, p in expected.items()
        ]
        holders: dict[int, int] = {}
        for reply in self.grid.send_and_receive(queries):
            node = reply.metadata.src_node_id
            if reply.has_error():
                raise FederationError(f"node {node}: {reply.error.reason}")
            metrics = reply.content.metric_records[METRICS_RECORD]
            partition = int(metrics[PARTITION_KEY])
            if expected.get(node) not in (None, partition):
                raise FederationError(f"node {node} answered for partition {partition}, not {expected[node]}")
            holders[partition] = node
            self.aggregation.node_joined(partition, metrics)
        return holders


class QueriedNodes(Nodes):
    """Each node holds one partition (``partition-id`` in its node config); discovery asks every
    connected node which one: one query per node, before round 1."""

    holders: dict[int, int]
    """Partition -> the node that holds it (after :meth:`discover`)."""

    def discover(self) -> None:
        """Query every connected node; together they must hold exactly the partitions 0..num_clients-1."""
        node_ids = list(self.grid.get_node_ids())
        self.holders = self.ask(dict.fromkeys(sorted(node_ids)))
        expected = set(range(self.num_clients))
        if set(self.holders) != expected:
            raise FederationError(
                f"data.num_clients is {len(expected)} but the {len(node_ids)} connected nodes hold "
                f"partitions {sorted(self.holders)[:10]}{'...' if len(self.holders) > 10 else ''}"
            )

    def route(self, partitions: Sequence[int]) -> dict[int, int]:
        """Each partition's holder (all joined at discovery)."""
        return {p: self.holders[p] for p in partitions}

    def sender_handles(self) -> dict[int, int]:
        """The holder's rank among the connected nodes' random ids."""
        ranks = {node: rank for rank, node in enumerate(sorted(self.holders.values()))}
        return {partition: ranks[node] for partition, node in self.holders.items()}


class VirtualClients(Nodes):
    """A pool of interchangeable simulated nodes, at least as many as a round samples: the i-th
    partition of a round goes to the i-th node, and every message names its partition (the
    ClientApp loads it). A partition joins the aggregation when it is first sampled."""

    pool: list[int]
    """The connected nodes' ids, sorted (after :meth:`discover`)."""

    def __init__(self, grid: Grid, aggregation: Aggregation, num_clients: int, per_round: int) -> None:
        super().__init__(grid, aggregation, num_clients)
        self.per_round = per_round
        self.joined: set[int] = set()

    def discover(self) -> None:
        """The pool's node ids; no message is sent."""
        self.pool = sorted(self.grid.get_node_ids())
        if len(self.pool) < self.per_round:
            raise FederationError(f"{self.per_round} clients a round need as many virtual nodes, "
                                  f"but {len(self.pool)} are connected")

    def route(self, partitions: Sequence[int]) -> dict[int, int]:
        """The round's partitions on the pool's first nodes; those sampled for the first time are
        asked the discovery query first when the aggregation needs their answers."""
        nodes = dict(zip(partitions, self.pool, strict=False))
        if self.aggregation.hears_nodes and (new := [p for p in partitions if p not in self.joined]):
            self.ask({nodes[p]: p for p in new})
        self.joined.update(partitions)
        return nodes

    def sender_handles(self) -> dict[int, int]:
        """A random permutation, drawn afresh for each run as simulated node ids are."""
        return dict(enumerate(np.random.default_rng().permutation(self.num_clients).tolist()))

    def address(self, partition: int) -> dict[str, ConfigRecord]:
        """The partition the node is to load, in its own record."""
        return {ADDRESS_RECORD: ConfigRecord({PARTITION_KEY: partition})}
