"""Gaussian noise on the aggregate: weak differential privacy (Sun et al., 2019)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from pydantic import Field

from fedsec.defenses._math import gaussian_like
from fedsec.defenses.base import Decision, Defense, DefenseParams, Kind, UpdateBatch, register
from fedsec.defenses.scalars import Scalar, ScalarBatch


@register("dp-noise")
class DPNoise(Defense):
    """Add N(0, std^2 I) to the aggregate, drawn from the batch's generator.

    ``std`` is ``sigma``, or ``sigma`` times the bound an earlier ``norm-clipping`` stage
    used when ``relative`` (for central DP with n clipped updates averaged, that is a noise
    multiplier z with ``sigma = z / n``). Acts on the aggregate: no minimum number of rows.
    Reads no scalar of the rows: on ciphertexts the plaintext noise is added to the
    encrypted aggregate.
    """

    kind = Kind.POST
    rejects = False

    class Params(DefenseParams):
        sigma: float = Field(
            0.01, ge=0.0, description="Noise std (update units), or a factor of the clip bound."
        )
        relative: bool = Field(
            False, description="Read sigma as a multiple of norm-clipping's bound."
        )

    params: Params

    def needs(self) -> frozenset[Scalar]:
        """Nothing: the noise does not depend on the rows."""
        return frozenset()

    def _std(self, info: Mapping[str, float]) -> float:
        """The noise std (update units), given the ``info`` of the earlier stages."""
        std = self.params.sigma
        if self.params.relative:
            bound = info.get("norm-clipping.bound")
            if bound is None:
                raise ValueError("dp-noise with relative: true needs norm-clipping before it")
            std *= bound
        return std

    def decide(self, batch: UpdateBatch) -> Decision:
        assert batch.aggregate is not None
        std = self._std(batch.info)
        aggregate = batch.aggregate
        if std > 0:
            generator = batch.require_generator(self.name)
            aggregate = aggregate + gaussian_like(aggregate, std, generator)
        return Decision(aggregate=aggregate, info={"std": std})

    def on_scalars(self, batch: ScalarBatch) -> ScalarBatch:
        """Noise drawn as :meth:`decide` draws it; the aggregate defaults to the weighted mean."""
        std = self._std(batch.info)
        if batch.coefficients is None:
            batch = replace(batch, coefficients=batch.mean_coefficients())
        return replace(batch.with_noise(std), info={**batch.info, f"{self.name}.std": std})
