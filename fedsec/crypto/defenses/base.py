"""Defenses on ciphertexts: the decisions of the plaintext stages, made from decrypted scalars.

The server holds n encrypted updates ``x_i``. A stage never sees an update: it reads
per-client scalars (squared norms, the Gram matrix ``x_i . x_j``, inner products with the
encrypted global model) that :class:`EncryptedScalars` computes homomorphically and has the
key authority decrypt, and it decides plaintext numbers: which rows stay accepted, a scale
per row (clipping) and finally the coefficients ``c_i`` of the aggregate ``sum_i c_i x_i``,
which the server forms as a homomorphic weighted sum. Stages take the parameters of the
plaintext stage of the same name (fedsec.defenses) and reuse its selection math.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import tenseal as ts
import torch
from torch import Tensor

from fedsec.crypto.scalars import Decrypt, gram_matrix, inner_product
from fedsec.defenses._math import TINY


class EncryptedScalars:
    """Scalars of one round's encrypted updates, computed and decrypted once, on first use.

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


@dataclass(frozen=True)
class ScalarBatch:
    """What the encrypted pipeline decided so far about one round's n encrypted rows.

    Attributes
    ----------
    scalars : EncryptedScalars
        Source of the (unscaled) per-client scalars.
    weights : Tensor
        (n,) float64 example counts.
    accepted : Tensor
        (n,) bool, rows still in the game.
    scale : Tensor
        (n,) float64 factor of every row set by pre-processing (row i now stands for scale_i x_i).
    coefficients : Tensor or None
        (n,) float64 aggregate coefficients on the scaled rows, once an aggregator set them.
    noise : Tensor or None
        (d,) plaintext noise added to the aggregate (post-processing), float32.
    scores, info
        As in fedsec.defenses.UpdateBatch.
    generator : torch.Generator or None
        The round's generator (same draws as the plaintext pipeline).
    d : int
        Length of an update.
    """

    scalars: EncryptedScalars
    weights: Tensor
    accepted: Tensor
    scale: Tensor
    d: int
    coefficients: Tensor | None = None
    noise: Tensor | None = None
    scores: dict[str, Tensor] = field(default_factory=dict)
    info: dict[str, float] = field(default_factory=dict)
    generator: torch.Generator | None = None

    def gram(self, index: Tensor) -> Tensor:
        """Gram matrix of the scaled rows at ``index``, (k, k)."""
        s = self.scale[index]
        return self.scalars.gram()[index][:, index] * s.unsqueeze(0) * s.unsqueeze(1)

    def norms(self, index: Tensor) -> Tensor:
        """L2 norms of the scaled rows at ``index``, (k,)."""
        return (self.scalars.sq_norms()[index] * self.scale[index] ** 2).clamp_min(0.0).sqrt()

    def mean_coefficients(self) -> Tensor:
        """Coefficients of the example-weighted mean of the accepted rows."""
        w = self.weights * self.accepted
        return w / w.sum().clamp_min(TINY)

    def with_score(self, name: str, index: Tensor, score: Tensor) -> ScalarBatch:
        """This batch with stage ``name``'s scores for the rows at ``index`` (NaN elsewhere)."""
        full = torch.full((self.accepted.numel(),), float("nan"), dtype=torch.float64)
        full[index] = score.double().cpu()
        return replace(self, scores={**self.scores, name: full})

    def with_noise(self, std: float) -> ScalarBatch:
        """This batch with N(0, std^2 I) added to its noise, drawn as the plaintext stages draw it."""
        from fedsec.defenses._math import gaussian_like

        if std <= 0:
            return self
        if self.generator is None:
            raise ValueError("noise needs the round's generator")
        drawn = gaussian_like(torch.zeros(self.d), std, self.generator)
        return replace(self, noise=drawn if self.noise is None else self.noise + drawn)

    def final_coefficients(self) -> Tensor:
        """Coefficient of every original row x_i in the aggregate (scale folded in)."""
        coefficients = self.coefficients if self.coefficients is not None else self.mean_coefficients()
        return coefficients * self.scale


Stage = Callable[[ScalarBatch, Any, str], ScalarBatch]
"""An encrypted stage: (batch, the plaintext stage's params, stage name) -> batch."""

HE_STAGES: dict[str, Stage] = {}


def he_stage(name: str) -> Callable[[Stage], Stage]:
    """Register the encrypted version of the plaintext stage ``name``."""

    def decorator(function: Stage) -> Stage:
        HE_STAGES[name] = function
        return function

    return decorator
