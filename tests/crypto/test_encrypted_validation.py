"""Malformed encrypted replies: each kind is rejected with its reason before any ciphertext is summed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import tenseal as ts
import torch
from flwr.app import Array, ArrayRecord, Message, MessageType, MetricRecord, RecordDict

from fedsec.crypto.key_authority import KeyAuthority
from fedsec.crypto.layout import CiphertextLayout
from fedsec.crypto.packing import chunk_bounds, encrypt_vector
from fedsec.fl.encrypted_transport import (
    chunks_record,
    validate_encrypted_reply,
)
from fedsec.fl.protocol import METRICS_RECORD, NUM_EXAMPLES_KEY, PARTITION_KEY, UPDATE_RECORD
from fedsec.fl.validation import RejectedReply, ValidReply
from tests.crypto.conftest import MODEL_SIZE

PARTITION = 3


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps messages with the running task's identity; give this process one."""
    from flwr.supercore.task_identity import TaskIdentity

    for field, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, field, value)


def layout(authority: KeyAuthority) -> CiphertextLayout:
    params = authority.params
    fresh = encrypt_vector(authority.public_context(), torch.zeros(MODEL_SIZE), params.slots)
    return CiphertextLayout(chunk_bounds(MODEL_SIZE, params.slots), 2 * max(len(c.serialize()) for c in fresh),
                            2.0**params.scale_bits, len(params.coeff_mod_bit_sizes) - 1)


def reply(update: ArrayRecord, examples: int = 50) -> Message:
    content = RecordDict({UPDATE_RECORD: update, METRICS_RECORD: MetricRecord(
        {PARTITION_KEY: PARTITION, NUM_EXAMPLES_KEY: examples, "train_s": 0.1})})
    sent = Message(RecordDict(), dst_node_id=7, message_type=MessageType.TRAIN)
    return Message(content, reply_to=sent)


def chunks(authority: KeyAuthority) -> list[ts.CKKSVector]:
    update = torch.randn(MODEL_SIZE, generator=torch.Generator().manual_seed(0)) * 0.01
    return encrypt_vector(authority.public_context(), update, authority.params.slots)


def raw(blobs: list[bytes]) -> ArrayRecord:
    record = ArrayRecord()
    for i, blob in enumerate(blobs):
        record[str(i)] = Array(np.frombuffer(blob, dtype=np.uint8))
    return record


KINDS: dict[str, tuple[Callable[[KeyAuthority], Message], str]] = {
    "missing chunk": (lambda a: reply(chunks_record(chunks(a)[:1])), "1 ciphertexts, expected 2"),
    "garbage bytes": (lambda a: reply(raw([b"\x00" * 100, b"\x01" * 100])), "undecodable ciphertext"),
    "oversized chunk": (lambda a: reply(raw([chunks(a)[0].serialize() * 3, chunks(a)[1].serialize()])), "bytes, at most"),
    "swapped chunks": (lambda a: reply(chunks_record(chunks(a)[::-1])), "ciphertext sizes"),
    "spent level": (lambda a: reply(chunks_record([c * 1.0 for c in chunks(a)])), "primes, expected a fresh one"),
    "unrescaled product": (lambda a: reply(chunks_record(unrescaled(a))), "scale 2^80.00, expected 2^40"),
    "huge example count": (lambda a: reply(chunks_record(chunks(a)), examples=10**9), "above the bound"),
}


def unrescaled(authority: KeyAuthority) -> list[ts.CKKSVector]:
    """A product left at scale 2^80 (not rescaled), at full level."""
    context = authority.public_context()
    context.auto_rescale = False
    return [ts.ckks_vector(context, [0.1] * 4096) * ts.ckks_vector(context, [0.1] * 4096),
            ts.ckks_vector(context, [0.1] * (MODEL_SIZE - 4096))]


@pytest.mark.parametrize("kind", KINDS)
def test_malformed_encrypted_reply_is_rejected(authority: KeyAuthority, kind: str) -> None:
    build, reason = KINDS[kind]
    checked = validate_encrypted_reply(build(authority), PARTITION, authority.public_context(), layout(authority),
                                       max_examples=10_000)
    assert isinstance(checked, RejectedReply) and reason in checked.reason, checked


def test_an_honest_encrypted_reply_passes(authority: KeyAuthority) -> None:
    checked = validate_encrypted_reply(reply(chunks_record(chunks(authority))), PARTITION,
                                       authority.public_context(), layout(authority), max_examples=10_000)
    assert isinstance(checked, ValidReply) and checked.num_examples == 50
