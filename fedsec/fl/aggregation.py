"""The one interface the round loop talks to: the server's aggregation state and step.

Two implementations: :class:`~fedsec.fl.plain_aggregation.PlaintextAggregation` (the global model
as a tensor) and :class:`~fedsec.fl.encrypted_aggregation.EncryptedAggregation` (the global model
as CKKS ciphertexts, the key authority in its own process). The loop never asks which one it has.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from torch import nn

from fedsec.defenses import DefensePipeline
from fedsec.watermark.owner import WatermarkOwner


@dataclass(frozen=True)
class Decision:
    """What the aggregation decided in a round (the fields the round's records read).

    Attributes
    ----------
    accepted : Tensor
        (n,) bool, one entry per aggregated reply, in the order given.
    scores : dict[str, Tensor]
        Per-stage (n,) scores of the defense pipeline.
    info : dict[str, float]
        Scalars the stages report.
    contributions : Tensor or None
        (n,) share of the aggregate each reply put in (``UpdateBatch.contributions``: >= 0,
        summing to 1, all 0 when nothing was aggregated); None when the aggregation cannot know
        it (:attr:`Aggregation.contributions_unavailable` says why).
    """

    accepted: torch.Tensor
    scores: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict[str, float] = field(default_factory=dict)
    contributions: torch.Tensor | None = None


class Aggregation(ABC):
    """Broadcast the global state, validate a reply, aggregate a round, give the evaluator and the
    owner their views, save and restore state."""

    pipeline: DefensePipeline
    """The scenario's defense stages, in order."""
    key_fingerprint: str | None = None
    """Public fingerprint of the keys the state is encrypted under (None: not encrypted)."""
    rejects: bool = False
    """Whether the defense pipeline may reject valid updates (``DefensePipeline.rejects``): only
    then does a round have detection rates."""
    contributions_unavailable: str | None = None
    """Why decisions carry no contributions, as one phrase (None: they do)."""
    hears_nodes: bool = False
    """Whether :meth:`node_joined` must hear a client's answer to the discovery query before the
    client trains: virtual clients are then asked when first sampled (fedsec.fl.nodes)."""

    def query_content(self) -> RecordDict:
        """Content of the discovery query, sent to every node before round 1 (to a virtual client
        when first sampled, and only if :attr:`hears_nodes`)."""
        return RecordDict()

    def node_joined(self, partition: int, metrics: MetricRecord) -> None:
        """A node's answer to the discovery query (``metrics``: what it declared)."""

    def start_round(self, round_number: int) -> None:
        """Called as a round starts, before anything is sent."""

    @abstractmethod
    def broadcast(self, partitions: Sequence[int]) -> tuple[ArrayRecord, dict[str, Any]]:
        """The model record and the config entries of this round's train messages to ``partitions``."""

    @abstractmethod
    def validate(self, reply: Message, partition: int, max_examples: int) -> Any:
        """The reply as an aggregatable update (with ``partition``, ``num_examples``, ``metrics``), or a
        RejectedReply with the reason; ``max_examples`` bounds the example count a client may claim."""

    @abstractmethod
    def aggregate(self, round_number: int, valid: Sequence[Any], senders: Sequence[int],
                  generator: torch.Generator) -> Decision:
        """Fold the round's valid updates into the global state. ``senders``: the opaque sender
        handle of each update; ``generator``: the source of the round's random draws. Raises
        fedsec.defenses.BelowMinimum, with the state unchanged, when a defense cannot run."""

    @abstractmethod
    def evaluator_view(self) -> torch.Tensor:
        """The global model as a flat vector, for the evaluator (never used by the aggregation)."""

    @abstractmethod
    def owner_step(self, owner: WatermarkOwner, round_number: int, model: nn.Module) -> dict[str, float]:
        """Let the owner embed (when scheduled) and verify after aggregation; ``model`` is a
        scratch module of the run's architecture. Returns the round-record fields."""

    def round_costs(self, valid: Sequence[Any], bytes_up: int) -> dict[str, Any]:
        """Extra cost fields of the last round's record."""
        return {}

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The aggregation's state after a round (tensors and plain data only)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def close(self) -> None:
        """Release what the aggregation started (processes)."""

