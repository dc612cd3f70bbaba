"""What every encrypted update must look like, checked on its bytes with the public context only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import tenseal as ts

from fedsec.crypto.packing import deserialize_chunks


@dataclass(frozen=True)
class CiphertextLayout:
    """The shape of an encrypted model vector.

    Attributes
    ----------
    bounds : list of (int, int)
        (start, stop) of every chunk in the model vector.
    max_chunk_bytes : int
        Largest serialized chunk accepted, in bytes.
    scale : float
        Encoding scale of a fresh ciphertext (2^scale_bits).
    primes : int
        RNS primes of a fresh ciphertext (the modulus chain less the special prime).
    """

    bounds: list[tuple[int, int]]
    max_chunk_bytes: int
    scale: float
    primes: int

    def problem(self, chunk: ts.CKKSVector) -> str | None:
        """Why ``chunk`` is not a fresh, relinearized ciphertext at full level and scale, or None."""
        for part in chunk.ciphertext():
            if part.size() != 2 or part.is_transparent():
                return f"ciphertext with {part.size()} polynomials (transparent: {part.is_transparent()}), expected 2"
            if part.coeff_modulus_size() != self.primes:
                return f"ciphertext at {part.coeff_modulus_size()} primes, expected a fresh one at {self.primes}"
            if abs(part.scale / self.scale - 1) > 1e-9:
                return f"ciphertext at scale 2^{math.log2(part.scale):.2f}, expected 2^{math.log2(self.scale):.0f}"
        return None

    def read(self, context: ts.Context, blobs: Sequence[bytes]) -> list[ts.CKKSVector] | str:
        """The ciphertexts of an encrypted vector sent as ``blobs``, or why they are refused: chunk
        count, bytes, decodability with ``context``, values per chunk, freshness. Values themselves
        cannot be checked without the secret key."""
        if len(blobs) != len(self.bounds):
            return f"{len(blobs)} ciphertexts, expected {len(self.bounds)}"
        if (largest := max((len(b) for b in blobs), default=0)) > self.max_chunk_bytes:
            return f"ciphertext of {largest} bytes, at most {self.max_chunk_bytes} expected"
        try:
            chunks = deserialize_chunks(context, blobs)
        except Exception as exc:  # noqa: BLE001 (TenSEAL raises several kinds on garbage bytes)
            return f"undecodable ciphertext: {type(exc).__name__}"
        sizes, expected = [chunk.size() for chunk in chunks], [b - a for a, b in self.bounds]
        if sizes != expected:
            return f"ciphertext sizes {sizes[:3]}..., expected {expected[:3]}..."
        for chunk in chunks:
            if problem := self.problem(chunk):
                return problem
        return chunks
