"""Server-side checks of every client reply before anything is aggregated."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from flwr.app import Message

from fedsec.fl.protocol import (
    METRICS_RECORD,
    NUM_EXAMPLES_KEY,
    PARTITION_KEY,
    UPDATE_RECORD,
    VECTOR_KEY,
)


@dataclass(frozen=True)
class ValidReply:
    """A reply that may be aggregated: the update (d,) and what the client reported."""

    partition: int
    update: torch.Tensor
    num_examples: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class RejectedReply:
    """A reply dropped before aggregation, with the reason recorded in the run directory."""

    partition: int
    reason: str


def validate_reply(
    reply: Message, expected_partition: int, dimension: int, max_norm: float | None
) -> ValidReply | RejectedReply:
    """Check a train reply's shape, dtype, finiteness, norm and fields.

    ``dimension`` is the model's parameter count; ``max_norm`` an optional L2 bound above which
    an update is absurd (None: no bound).
    """

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
    record = content.array_records[UPDATE_RECORD]
    if list(record.keys()) != [VECTOR_KEY]:
        return reject(f"update record keys {list(record.keys())}, expected [{VECTOR_KEY!r}]")
    array = record[VECTOR_KEY]
    if array.dtype != "float32":
        return reject(f"dtype {array.dtype}, expected float32")
    if tuple(array.shape) != (dimension,):
        return reject(f"shape {tuple(array.shape)}, expected ({dimension},)")
    if len(array.data) > 4 * dimension + 1024:
        return reject(f"payload of {len(array.data)} bytes for {dimension} values")
    try:
        values = np.asarray(array.numpy())
    except Exception as exc:  # np.load raises several kinds on garbage bytes
        return reject(f"undecodable payload: {type(exc).__name__}")
    if values.dtype != np.float32 or values.shape != (dimension,):
        return reject(f"payload decodes to {values.dtype}{values.shape}, header says float32({dimension},)")
    update = torch.from_numpy(values)
    if not torch.isfinite(update).all():
        return reject("non-finite values (NaN or Inf)")
    if max_norm is not None and (norm := update.norm().item()) > max_norm:
        return reject(f"update norm {norm:.3g} above the bound {max_norm:.3g}")
    reported = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    return ValidReply(expected_partition, update, num_examples, reported)
