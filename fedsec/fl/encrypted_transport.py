"""Ciphertexts in Flower messages: encrypted vectors as records, client-side coding, reply checks.

An encrypted vector travels as an ArrayRecord of uint8 arrays, one per ciphertext chunk,
keyed "0", "1", ... in chunk order. The train config carries the key set's public
fingerprint (``HE_FINGERPRINT_KEY``; clients find the secret context where the run's set-up
put it, ``$FEDSEC_KEY_FILE``, the stand-in for key distribution, and check it against the
fingerprint) and each sampled client's coefficient (``HE_COEFFICIENTS_KEY``, aligned with the sampled list): the
client sends ``c_i * update`` encrypted, so that FedAvg is a plain sum of ciphertexts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np
import tenseal as ts
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message

from fedsec.crypto.key_authority import KEY_FILE_ENV, load_secret_context
from fedsec.crypto.layout import CiphertextLayout
from fedsec.crypto.packing import (
    decrypt_vector,
    deserialize_chunks,
    encrypt_vector,
    serialize_chunks,
)
from fedsec.fl.protocol import (
    SAMPLED_KEY,
)
from fedsec.fl.validation import RejectedReply, ValidReply, checked_reply

HE_FINGERPRINT_KEY = "he-key-fingerprint"
HE_COEFFICIENTS_KEY = "he-coefficients"
HE_SLOTS_KEY = "he-slots"
HE_BREAKS_KEY = "he-breaks"


def chunks_record(chunks: Sequence[ts.CKKSVector]) -> ArrayRecord:
    """Ciphertexts as a record of uint8 arrays keyed by chunk position."""
    record = ArrayRecord()
    for i, blob in enumerate(serialize_chunks(chunks)):
        record[str(i)] = Array(np.frombuffer(blob, dtype=np.uint8))
    return record


def record_blobs(record: ArrayRecord) -> list[bytes]:
    """The ciphertext bytes of a record, in chunk order (keys must be "0".."k-1")."""
    keys = list(record.keys())
    if keys != [str(i) for i in range(len(keys))]:
        raise ValueError(f"chunk keys {keys[:5]}..., expected 0..{len(keys) - 1}")
    return [np.asarray(record[k].numpy()).tobytes() for k in keys]


# -- client side ---------------------------------------------------------------------------


def holder_context(config: ConfigRecord) -> ts.Context:
    """This key holder's secret context, checked against the fingerprint the train message names."""
    return load_secret_context(os.environ.get(KEY_FILE_ENV, ""), str(config[HE_FINGERPRINT_KEY]))


def client_global_vector(record: ArrayRecord, config: ConfigRecord) -> tuple[torch.Tensor, float]:
    """A key holder's decryption of the broadcast global model; (vector, seconds)."""
    started = time.perf_counter()
    context = holder_context(config)
    vector = decrypt_vector(deserialize_chunks(context, record_blobs(record)), context)
    return vector, time.perf_counter() - started


def client_update_record(update: torch.Tensor, partition: int, config: ConfigRecord) -> tuple[ArrayRecord, float]:
    """The client's update times its coefficient, encrypted; (record, seconds)."""
    started = time.perf_counter()
    context = holder_context(config)
    sampled = [int(p) for p in config[SAMPLED_KEY]]
    coefficient = float(config[HE_COEFFICIENTS_KEY][sampled.index(partition)])
    scaled = update.double() * coefficient if coefficient != 1.0 else update
    breaks = [int(b) for b in config[HE_BREAKS_KEY]]
    record = chunks_record(encrypt_vector(context, scaled, int(config[HE_SLOTS_KEY]), breaks))
    return record, time.perf_counter() - started


# -- server side ---------------------------------------------------------------------------


def read_ciphertexts(record: ArrayRecord, context: ts.Context, layout: CiphertextLayout) -> list[ts.CKKSVector] | str:
    """The ciphertexts of an encrypted update record, or why they are refused (see
    :meth:`fedsec.crypto.layout.CiphertextLayout.read`)."""
    try:
        blobs = record_blobs(record)
    except Exception as exc:  # noqa: BLE001 (np.load raises several kinds on garbage bytes)
        return f"undecodable encrypted update: {type(exc).__name__}"
    return layout.read(context, blobs)


def validate_encrypted_reply(
    reply: Message, expected_partition: int, context: ts.Context, layout: CiphertextLayout,
    max_examples: int | None = None,
) -> ValidReply[list[ts.CKKSVector]] | RejectedReply:
    """Check an encrypted train reply: envelope (as plaintext replies, example count at most
    ``max_examples``), chunk count, bytes, decodability, sizes, and that every chunk is a fresh
    ciphertext (level, scale, two polynomials).

    Values cannot be checked (finiteness, norm) without the secret key: defenses on
    ciphertexts take that role.
    """
    return checked_reply(reply, expected_partition, max_examples,
                         lambda record: read_ciphertexts(record, context, layout))
