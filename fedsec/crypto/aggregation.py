"""Server-side sums of ciphertext lists; only the public context is involved."""

from __future__ import annotations

from collections.abc import Sequence

import tenseal as ts


def add(chunks: Sequence[ts.CKKSVector], other: Sequence[ts.CKKSVector]) -> list[ts.CKKSVector]:
    """Chunk-wise sum of two encrypted vectors of the same layout."""
    if len(chunks) != len(other):
        raise ValueError(f"cannot add {len(other)} chunks to {len(chunks)}")
    return [a + b for a, b in zip(chunks, other, strict=True)]


def encrypted_sum(vectors: Sequence[Sequence[ts.CKKSVector]]) -> list[ts.CKKSVector]:
    """``sum_i x_i`` of encrypted vectors: additions only, no level consumed."""
    if not vectors:
        raise ValueError("nothing to sum")
    if len(vectors) == 1:
        return list(vectors[0])
    # A fresh first sum, then in-place additions (CKKSVector.copy() is slow: it copies the context).
    total = add(vectors[0], vectors[1])
    for vector in vectors[2:]:
        for chunk, addend in zip(total, vector, strict=True):
            chunk += addend
    return total


def encrypted_weighted_sum(
    vectors: Sequence[Sequence[ts.CKKSVector]], coefficients: Sequence[float]
) -> list[ts.CKKSVector]:
    """``sum_i c_i x_i`` with plaintext coefficients: one plaintext multiplication (one level)
    per term; terms with c_i = 0 are skipped. ValueError when every coefficient is 0."""
    terms = [(vector, float(c)) for vector, c in zip(vectors, coefficients, strict=True) if c != 0.0]
    if not terms:
        raise ValueError("every coefficient is 0")
    total = [chunk * terms[0][1] for chunk in terms[0][0]]
    for vector, c in terms[1:]:
        for chunk, addend in zip(total, vector, strict=True):
            chunk += addend * c
    return total
