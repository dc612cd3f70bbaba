"""Defense decisions made from per-client scalars instead of the update rows.

A stage that declares it needs only scalars of the rows (:meth:`Defense.needs`: their squared
norms, their Gram matrix, their inner products with the global model) can decide from a
:class:`ScalarSource`: under CKKS the server computes those scalars on ciphertexts and the key
authority decrypts exactly them (``fedsec.crypto.scalars.EncryptedScalars``); in plaintext they
come from the tensors (:class:`TensorScalars`). The stage's :meth:`Defense.on_scalars` decides
plaintext numbers: which rows stay accepted, a scale per row (clipping) and the coefficients
``c_i`` of the aggregate ``sum_i c_i x_i``, plus plaintext noise added to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from torch import Tensor

from fedsec.defenses._math import TINY, gaussian_like

if TYPE_CHECKING:
    from fedsec.defenses.base import Defense


class Scalar(Enum):
    """What a stage reads from the n update rows ``x_i`` of a round."""

    ROWS = "rows"  # the rows themselves: the stage cannot run on ciphertexts
    NORMS = "squared norms"  # |x_i|^2
    GRAM = "Gram matrix"  # x_i . x_j, squared norms included
    GLOBAL_PRODUCTS = "inner products with the global model"  # x_i . w, and w . w


@runtime_checkable
class ScalarSource(Protocol):
    """The scalars of one round's n update rows, each computed on first use, once per round."""

    def gram(self) -> Tensor:
        """``x_i . x_j``, (n, n) float64."""
        ...

    def sq_norms(self) -> Tensor:
        """``|x_i|^2``, (n,) float64."""
        ...

    def global_products(self) -> Tensor:
        """``x_i . w`` for every row, then ``w . w`` (last entry), (n + 1,) float64."""
        ...


class TensorScalars:
    """A :class:`ScalarSource` computed from plaintext tensors, in float64.

    Parameters
    ----------
    updates : Tensor
        (n, d) update rows.
    global_vector : Tensor or None
        (d,) global model, for :meth:`global_products`.
    """

    def __init__(self, updates: Tensor, global_vector: Tensor | None = None) -> None:
        self.updates = updates.detach().to("cpu", torch.float64)
        self.global_vector = (
            None if global_vector is None else global_vector.detach().to("cpu", torch.float64)
        )
        self._gram: Tensor | None = None

    def gram(self) -> Tensor:
        """``x_i . x_j``, (n, n) float64."""
        if self._gram is None:
            self._gram = self.updates @ self.updates.T
        return self._gram

    def sq_norms(self) -> Tensor:
        """``|x_i|^2``, (n,) float64."""
        return self.gram().diagonal().clone()

    def global_products(self) -> Tensor:
        """``x_i . w`` for every row, then ``w . w``, (n + 1,) float64."""
        if self.global_vector is None:
            raise ValueError("scalars of local models need the global model")
        w = self.global_vector
        return torch.cat([self.updates @ w, (w @ w).reshape(1)])


class _Declared:
    """The scalars of ``source`` that one stage declared in :meth:`Defense.needs`; reading
    another one is a RuntimeError (the declaration sizes what the key authority decrypts)."""

    def __init__(self, source: ScalarSource, needs: frozenset[Scalar], stage: str) -> None:
        self.source, self.needs, self.stage = source, needs, stage

    def _allow(self, *scalars: Scalar) -> None:
        if self.needs.isdisjoint(scalars):
            raise RuntimeError(
                f"{self.stage} reads the {scalars[0].value} of the rows, which its needs() does not declare"
            )

    def gram(self) -> Tensor:
        self._allow(Scalar.GRAM)
        return self.source.gram()

    def sq_norms(self) -> Tensor:
        self._allow(Scalar.NORMS, Scalar.GRAM)
        return self.source.sq_norms()

    def global_products(self) -> Tensor:
        self._allow(Scalar.GLOBAL_PRODUCTS)
        return self.source.global_products()


@dataclass(frozen=True)
class ScalarBatch:
    """What the stages decided so far about one round's n rows, from their scalars only.

    Attributes
    ----------
    scalars : ScalarSource
        Source of the (unscaled) per-client scalars.
    weights : Tensor
        (n,) float64 example counts.
    accepted : Tensor
        (n,) bool, rows still in the game.
    scale : Tensor
        (n,) float64 factor of every row set by pre-processing (row i now stands for scale_i x_i).
    d : int
        Length of an update (count of coordinates).
    coefficients : Tensor or None
        (n,) float64 aggregate coefficients on the scaled rows, once an aggregator set them.
    noise : Tensor or None
        (d,) float32 plaintext noise added to the aggregate (post-processing).
    scores, info
        As in fedsec.defenses.UpdateBatch.
    generator : torch.Generator or None
        The round's generator (same draws as the plaintext pipeline).
    """

    scalars: ScalarSource
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


def run_scalar_pipeline(
    stages: Sequence[Defense], source: ScalarSource, weights: Tensor, d: int,
    generator: torch.Generator | None = None,
) -> ScalarBatch:
    """The decisions of ``stages`` made from the scalars of the rows (:meth:`Defense.on_scalars`).

    Parameters
    ----------
    stages : Sequence[Defense]
        The scenario's stages, in order; each must be :attr:`~Defense.encryptable`.
    source : ScalarSource
        The round's scalars; a stage reads only those its :meth:`~Defense.needs` declares.
    weights : Tensor
        (n,) example counts.
    d : int
        Length of an update (count of coordinates), for the noise.
    generator : torch.Generator or None
        The round's generator, as in the plaintext pipeline.

    Returns
    -------
    ScalarBatch
        ``final_coefficients()`` gives the aggregate's coefficient of every row, ``noise`` the
        plaintext noise to add to it.

    Raises
    ------
    BelowMinimum
        Before any further scalar is read, when a stage is left fewer accepted rows than it
        needs (:meth:`Defense.check_minimum`, as in the plaintext pipeline).
    NotImplementedError
        For a stage that needs the rows (the scenario check rejects those first).
    RuntimeError
        When a stage reads a scalar its :meth:`~Defense.needs` does not declare.
    """
    n = weights.numel()
    batch = ScalarBatch(
        scalars=source, weights=weights.double().cpu(), accepted=torch.ones(n, dtype=torch.bool),
        scale=torch.ones(n, dtype=torch.float64), d=d, generator=generator,
    )
    for stage in stages:
        stage.check_minimum(int(batch.accepted.sum()))
        declared = _Declared(source, stage.needs(), stage.label())
        batch = replace(stage.on_scalars(replace(batch, scalars=declared)), scalars=source)
    return batch
