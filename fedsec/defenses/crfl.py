"""CRFL server step (Xie et al., 2021): clip the new global model's norm, then perturb it."""

from __future__ import annotations

from pydantic import Field

from fedsec.defenses._math import clip_factors, gaussian_like
from fedsec.defenses.base import Decision, Defense, DefenseParams, Kind, UpdateBatch, register


@register("crfl")
class CRFL(Defense):
    """New model ``w = global + aggregate`` scaled to norm <= rho, plus N(0, sigma^2 I).

    Returns the update that leads there, ``w' - global``. The noise comes from the
    batch's generator. ``rho`` is a bound on the whole parameter vector, so it depends on
    the model: set it above the norm the model reaches when trained without attack.
    Acts on the aggregate: no minimum number of rows.

    Only CRFL's training-time step: the paper's certification (test-time parameter smoothing,
    a majority vote of M noisy copies of the final model, and its certified radius) is not
    computed, so MA and ASR are those of the single final model and the run certifies nothing.
    """

    kind = Kind.POST
    rejects = False
    rows_reason = "clipping and noising the plaintext new global model"

    class Params(DefenseParams):
        rho: float = Field(
            15.0, gt=0.0, description="Bound on the global model's parameter norm (L2)."
        )
        sigma: float = Field(0.01, ge=0.0, description="Std of the noise added to every parameter.")

    params: Params

    def decide(self, batch: UpdateBatch) -> Decision:
        assert batch.aggregate is not None
        model = batch.global_vector + batch.aggregate
        norm = model.norm()
        model = model * clip_factors(norm, self.params.rho)
        if self.params.sigma > 0:
            generator = batch.require_generator(self.name)
            model = model + gaussian_like(model, self.params.sigma, generator)
        return Decision(aggregate=model - batch.global_vector, info={"model_norm": float(norm)})
