"""Server-side checks of every client reply before anything is aggregated."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch
from flwr.app import ArrayRecord, Message

from fedsec.fl.protocol import (
    METRICS_RECORD,
    NUM_EXAMPLES_KEY,
    PARTITION_KEY,
    UPDATE_RECORD,
    VECTOR_KEY,
)

U = TypeVar("U")
"""An update as the aggregation reads it (a tensor, or ciphertexts)."""

TRAIN_SECONDS_KEY = "train_s"  # the client's own training time; the round record averages it


@dataclass(frozen=True)
class ValidReply(Generic[U]):
    """A reply that may be aggregated: the update and what the client reported.

    ``update`` is the (d,) tensor of a plaintext reply, or the ciphertexts of an encrypted one.
    """

    partition: int
    update: U
    num_examples: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class RejectedReply:
    """A reply dropped before aggregation, with the reason recorded in the run directory."""

    partition: int
    reason: str


@dataclass(frozen=True)
class ReplyEnvelope:
    """What every well-formed train reply carries besides its update payload."""

    update_record: ArrayRecord
    num_examples: int
    metrics: dict[str, float]


def check_envelope(
    reply: Message, expected_partition: int, max_examples: int | None = None
) -> ReplyEnvelope | RejectedReply:
    """The checks every train reply passes, plaintext or encrypted: no error, both records present,
    the partition claim, a positive integer example count (at most ``max_examples`` when given:
    FedAvg-style weighting trusts that count), the training-time metric, finite metrics."""

    def reject(reason: str) -> RejectedReply:
        return RejectedReply(expected_partition, reason)

    if reply.has_error():
        return reject(f"client error: {reply.error.reason}")
    content = reply.content
    if UPDATE_RECORD not in content.array_records or METRICS_RECORD not in content.metric_records:
        return reject("missing field: update or metrics record")
    metrics = content.metric_records[METRICS_RECORD]
    if metrics.get(PARTITION_KEY) != expected_partition:
        return reject(f"reply from partition {metrics.get(PARTITION_KEY)!r}, expected {expected_partition}")
    num_examples = metrics.get(NUM_EXAMPLES_KEY)
    if not isinstance(num_examples, int) or num_examples <= 0:
        return reject(f"bad {NUM_EXAMPLES_KEY}: {num_examples!r}")
    if max_examples is not None and num_examples > max_examples:
        return reject(f"bad {NUM_EXAMPLES_KEY}: {num_examples} above the bound {max_examples}")
    if not isinstance(metrics.get(TRAIN_SECONDS_KEY), (int, float)):
        return reject(f"missing metric {TRAIN_SECONDS_KEY}")
    non_finite = sorted(k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v))
    if non_finite:
        return reject(f"non-finite metrics: {', '.join(non_finite)}")
    reported = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    return ReplyEnvelope(content.array_records[UPDATE_RECORD], num_examples, reported)


def checked_reply(
    reply: Message, expected_partition: int, max_examples: int | None, read_update: Callable[[ArrayRecord], U | str]
) -> ValidReply[U] | RejectedReply:
    """The envelope checks (:func:`check_envelope`), then ``read_update`` on the update record: the
    update, or the reason it is refused."""
    envelope = check_envelope(reply, expected_partition, max_examples)
    if isinstance(envelope, RejectedReply):
        return envelope
    update = read_update(envelope.update_record)
    if isinstance(update, str):
        return RejectedReply(expected_partition, update)
    return ValidReply(expected_partition, update, envelope.num_examples, envelope.metrics)


def read_vector(record: ArrayRecord, dimension: int, max_norm: float | None) -> torch.Tensor | str:
    """The (d,) float32 update of a plaintext reply, or why it is refused: keys, dtype, shape,
    payload size, decodability, finiteness, and the L2 norm bound ``max_norm`` (None: none)."""
    if list(record.keys()) != [VECTOR_KEY]:
        return f"update record keys {list(record.keys())}, expected [{VECTOR_KEY!r}]"
    array = record[VECTOR_KEY]
    if array.dtype != "float32":
        return f"dtype {array.dtype}, expected float32"
    if tuple(array.shape) != (dimension,):
        return f"shape {tuple(array.shape)}, expected ({dimension},)"
    if len(array.data) > 4 * dimension + 1024:
        return f"payload of {len(array.data)} bytes for {dimension} values"
    try:
        values = np.asarray(array.numpy())
    except Exception as exc:  # np.load raises several kinds on garbage bytes
        return f"undecodable payload: {type(exc).__name__}"
    if values.dtype != np.float32 or values.shape != (dimension,):
        return f"payload decodes to {values.dtype}{values.shape}, header says float32({dimension},)"
    update = torch.from_numpy(values)
    if not torch.isfinite(update).all():
        return "non-finite values (NaN or Inf)"
    if max_norm is not None and (norm := update.norm().item()) > max_norm:
        return f"update norm {norm:.3g} above the bound {max_norm:.3g}"
    return update


def validate_reply(
    reply: Message,
    expected_partition: int,
    dimension: int,
    max_norm: float | None,
    max_examples: int | None = None,
) -> ValidReply[torch.Tensor] | RejectedReply:
    """Check a train reply's fields, metrics, shape, dtype, payload, finiteness and norm.

    ``expected_partition`` is the partition of the node the reply came from; ``dimension`` the
    model's parameter count; ``max_norm`` an optional L2 bound above which an update is absurd;
    ``max_examples`` an optional bound on the claimed example count (e.g. the size of the whole
    training set), since FedAvg-style weighting trusts that count (None: no bound).
    """
    return checked_reply(reply, expected_partition, max_examples, lambda record: read_vector(record, dimension, max_norm))
