"""Flat float vectors <-> lists of CKKS ciphertexts packed to full slots, and their bytes.

A vector of d values becomes ``ceil(d / slots)`` ``ckks_vector`` chunks (slots = N/2),
never one value per ciphertext. ``breaks`` start a new chunk at given offsets, so that a
layer a homomorphic step works on (the white-box watermark's target layer) has chunks of
its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import tenseal as ts
import torch


def chunk_bounds(d: int, slots: int, breaks: Sequence[int] = ()) -> list[tuple[int, int]]:
    """(start, stop) of every chunk of a d-vector: at most ``slots`` values, new chunk at each break."""
    edges = sorted({0, d, *(b for b in breaks if 0 < b < d)})
    bounds = []
    for start, stop in pairwise(edges):
        bounds += [(s, min(s + slots, stop)) for s in range(start, stop, slots)]
    return bounds


def encrypt_vector(
    context: ts.Context, vector: torch.Tensor, slots: int, breaks: Sequence[int] = ()
) -> list[ts.CKKSVector]:
    """Ciphertexts of a flat tensor (encrypted with the context's public key)."""
    values = vector.detach().to("cpu", torch.float64).numpy()
    return [ts.ckks_vector(context, values[a:b]) for a, b in chunk_bounds(values.size, slots, breaks)]


def decrypt_vector(chunks: Sequence[ts.CKKSVector], context: ts.Context) -> torch.Tensor:
    """The float32 tensor held by ``chunks``; ``context`` must hold the secret key."""
    parts = []
    for chunk in chunks:
        chunk.link_context(context)
        parts.append(np.asarray(chunk.decrypt(), dtype=np.float64))
    return torch.from_numpy(np.concatenate(parts).astype(np.float32)) if parts else torch.zeros(0)


def serialize_chunks(chunks: Sequence[ts.CKKSVector]) -> list[bytes]:
    """Each ciphertext's bytes (no key material)."""
    return [chunk.serialize() for chunk in chunks]


def deserialize_chunks(context: ts.Context, blobs: Sequence[bytes]) -> list[ts.CKKSVector]:
    """Ciphertexts read from bytes and linked to ``context``."""
    return [ts.ckks_vector_from(context, blob) for blob in blobs]
