"""Norm clipping of client updates (Sun et al., 2019, "Can you really backdoor FL?")."""

from __future__ import annotations

from dataclasses import replace

from pydantic import Field

from fedsec.defenses._math import clip_factors, row_norms
from fedsec.defenses.base import Decision, Defense, DefenseParams, Kind, UpdateBatch, register
from fedsec.defenses.scalars import Scalar, ScalarBatch


@register("norm-clipping")
class NormClipping(Defense):
    """Scale every accepted row down to an L2 norm of at most the bound.

    Reports the bound used as ``info["norm-clipping.bound"]`` (read by ``dp-noise`` with
    ``relative: true``). Score: each row's norm before clipping (L2). No minimum beyond
    one row. Decides from the rows' norms, so it runs on ciphertexts (rows rescaled by
    plaintext factors).
    """

    kind = Kind.PRE
    rejects = False

    class Params(DefenseParams):
        bound: float | None = Field(
            None,
            gt=0.0,
            description="Largest allowed update norm (L2, update units); None: the median norm.",
        )

    params: Params

    def decide(self, batch: UpdateBatch) -> Decision:
        norms = row_norms(batch.updates)
        bound = norms.median() if self.params.bound is None else self.params.bound
        updates = batch.updates * clip_factors(norms, bound).unsqueeze(1)
        return Decision(updates=updates, score=norms, info={"bound": float(bound)})

    def needs(self) -> frozenset[Scalar]:
        """The squared norms of the rows."""
        return frozenset({Scalar.NORMS})

    def on_scalars(self, batch: ScalarBatch) -> ScalarBatch:
        """Each accepted row's scale multiplied by its clip factor."""
        index = batch.accepted.nonzero().squeeze(1)
        if index.numel() == 0:
            return batch
        norms = batch.norms(index)
        bound = norms.median() if self.params.bound is None else self.params.bound
        scale = batch.scale.clone()
        scale[index] *= clip_factors(norms, bound)
        batch = replace(batch, scale=scale, info={**batch.info, f"{self.name}.bound": float(bound)})
        return batch.with_score(self.name, index, norms)
