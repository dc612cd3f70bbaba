"""Per-client scalars computed on ciphertexts: inner products, squared norms, the Gram matrix.

Each scalar is one ciphertext of size 1 (products of chunks added, slots summed once per
chunk size), so the key authority decrypts exactly one value per scalar. Needs the
context's Galois keys (slot sums) and one level (the products). :class:`EncryptedScalars`
serves them to the defenses that decide from scalars (a ``fedsec.defenses.ScalarSource``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tenseal as ts
import torch
from torch import Tensor

Decrypt = Callable[[list[ts.CKKSVector], str], list[np.ndarray]]
"""Asks the key authority to decrypt ciphertexts of scalars: (ciphertexts, what) -> plaintexts."""


def _slot_sum(products: Sequence[ts.CKKSVector]) -> ts.CKKSVector:
    """Sum over every slot of every product; chunks of equal size are added before one slot sum."""
    by_size: dict[int, ts.CKKSVector] = {}
    for product in products:
        size = product.size()
        if size in by_size:
            by_size[size] += product
        else:
            by_size[size] = product
    sums = [partial.sum() for partial in by_size.values()]
    total = sums[0]
    for partial in sums[1:]:
        total += partial
    return total


def inner_product(a: Sequence[ts.CKKSVector], b: Sequence[ts.CKKSVector]) -> ts.CKKSVector:
    """Encrypted ``a . b`` of two encrypted vectors of the same layout (one level)."""
    return _slot_sum([x * y for x, y in zip(a, b, strict=True)])


def plain_inner_product(a: Sequence[ts.CKKSVector], plain: torch.Tensor) -> ts.CKKSVector:
    """Encrypted ``a . p`` of an encrypted vector and a plaintext one (same total length)."""
    values = plain.detach().to("cpu", torch.float64).numpy()
    products, offset = [], 0
    for chunk in a:
        size = chunk.size()
        products.append(chunk * values[offset : offset + size].tolist())
        offset += size
    if offset != values.size:
        raise ValueError(f"encrypted vector has {offset} values, plaintext {values.size}")
    return _slot_sum(products)


def gram_matrix(vectors: Sequence[Sequence[ts.CKKSVector]], decrypt: Decrypt, diagonal_only: bool = False) -> torch.Tensor:
    """Decrypted Gram matrix ``G_ij = x_i . x_j`` (n, n) float64 of encrypted vectors.

    With ``diagonal_only`` only the squared norms are computed and decrypted; off-diagonal
    entries are NaN.
    """
    n = len(vectors)
    pairs = [(i, i) for i in range(n)] if diagonal_only else [(i, j) for i in range(n) for j in range(i, n)]
    scalars = [inner_product(vectors[i], vectors[j]) for i, j in pairs]
    what = "squared norms of client updates" if diagonal_only else "Gram matrix of client updates (inner products)"
    values = decrypt(scalars, what)
    gram = torch.full((n, n), float("nan"), dtype=torch.float64)
    for (i, j), value in zip(pairs, values, strict=True):
        gram[i, j] = gram[j, i] = float(value[0])
    return gram


def plain_products(vectors: Sequence[Sequence[ts.CKKSVector]], plain: torch.Tensor, decrypt: Decrypt, what: str) -> torch.Tensor:
    """Decrypted ``x_i . p`` for every encrypted vector and one plaintext vector, (n,) float64."""
    values = decrypt([plain_inner_product(v, plain) for v in vectors], what)
    return torch.tensor([float(v[0]) for v in values], dtype=torch.float64)


class EncryptedScalars:
    """Scalars of one round's encrypted updates, computed and decrypted once, on first use.

    Implements ``fedsec.defenses.ScalarSource``: a defense reads the scalars it declared,
    and only those are decrypted.

    Parameters
    ----------
    updates : Sequence[Sequence[ts.CKKSVector]]
        The n encrypted updates (chunk lists of one layout).
    decrypt : Decrypt
        Sends scalar ciphertexts to the key authority (requester: the server).
    global_chunks : Sequence[ts.CKKSVector] or None
        The encrypted global model, for scalars of local models ``w + x_i``.
    """

    def __init__(self, updates: Sequence[Sequence[ts.CKKSVector]], decrypt: Decrypt,
                 global_chunks: Sequence[ts.CKKSVector] | None = None) -> None:
        self.updates = updates
        self.decrypt = decrypt
        self.global_chunks = global_chunks
        self._gram: Tensor | None = None
        self._sq_norms: Tensor | None = None
        self._global_products: Tensor | None = None

    def gram(self) -> Tensor:
        """``x_i . x_j``, (n, n) float64."""
        if self._gram is None:
            self._gram = gram_matrix(self.updates, self.decrypt)
        return self._gram

    def sq_norms(self) -> Tensor:
        """``|x_i|^2``, (n,) float64 (from the Gram matrix when it is already known)."""
        if self._gram is not None:
            return self._gram.diagonal().clone()
        if self._sq_norms is None:
            self._sq_norms = gram_matrix(self.updates, self.decrypt, diagonal_only=True).diagonal().clone()
        return self._sq_norms

    def global_products(self) -> Tensor:
        """``x_i . w`` for every update and then ``w . w`` (last entry), (n + 1,) float64."""
        if self.global_chunks is None:
            raise ValueError("scalars of local models need the encrypted global model")
        if self._global_products is None:
            cts = [inner_product(u, self.global_chunks) for u in self.updates]
            cts.append(inner_product(self.global_chunks, self.global_chunks))
            values = self.decrypt(cts, "inner products of client updates with the global model")
            self._global_products = torch.tensor([float(v[0]) for v in values], dtype=torch.float64)
        return self._global_products
