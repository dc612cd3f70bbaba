"""Gaussian noise on the aggregate: weak differential privacy (Sun et al., 2019)."""

from __future__ import annotations

from pydantic import Field

from fedsec.defenses._math import gaussian_like
from fedsec.defenses.base import Decision, Defense, DefenseParams, Kind, UpdateBatch, register


@register("dp-noise")
class DPNoise(Defense):
    """Add N(0, std^2 I) to the aggregate, drawn from the batch's generator.

    ``std`` is ``sigma``, or ``sigma`` times the bound an earlier ``norm-clipping`` stage
    used when ``relative`` (for central DP with n clipped updates averaged, that is a noise
    multiplier z with ``sigma = z / n``). Acts on the aggregate: no minimum number of rows.
    """

    kind = Kind.POST

    class Params(DefenseParams):
        sigma: float = Field(
            0.01, ge=0.0, description="Noise std (update units), or a factor of the clip bound."
        )
        relative: bool = Field(
            False, description="Read sigma as a multiple of norm-clipping's bound."
        )

    params: Params

    def decide(self, batch: UpdateBatch) -> Decision:
        assert batch.aggregate is not None
        std = self.params.sigma
        if self.params.relative:
            bound = batch.info.get("norm-clipping.bound")
            if bound is None:
                raise ValueError("dp-noise with relative: true needs norm-clipping before it")
            std *= bound
        aggregate = batch.aggregate
        if std > 0:
            generator = batch.require_generator(self.name)
            aggregate = aggregate + gaussian_like(aggregate, std, generator)
        return Decision(aggregate=aggregate, info={"std": std})
