"""Geometric median by smoothed Weiszfeld iterations: RFA (Pillutla et al., 2022)."""

from __future__ import annotations

from pydantic import Field

from fedsec.defenses._math import distances_to, weighted_mean
from fedsec.defenses.base import Decision, Defense, DefenseParams, Kind, UpdateBatch, mean_contributions, register


@register("geometric-median")
class GeometricMedian(Defense):
    """Approximate ``argmin_z sum_i a_i |z - x_i|`` with ``a_i`` the example counts.

    Starts from the weighted mean; each Weiszfeld step re-weights rows by
    ``a_i / max(eps, |z - x_i|)``. Stops after ``iterations`` steps or when the objective
    improves by less than ``tolerance`` (relative). Score: distance of each row to the
    result (L2). No minimum beyond one row (the breakdown point is 1/2 for any n).
    """

    kind = Kind.AGGREGATE
    rejects = False
    rows_reason = "Weiszfeld iterations on the rows"

    class Params(DefenseParams):
        iterations: int = Field(10, ge=1, description="Maximum number of Weiszfeld steps.")
        eps: float = Field(
            1e-6,
            gt=0.0,
            description="Smoothing: shorter distances count as eps (L2, update units).",
        )
        tolerance: float = Field(
            1e-5, ge=0.0, description="Stop when the objective's relative improvement (dimensionless) is below it."
        )

    params: Params

    def decide(self, batch: UpdateBatch) -> Decision:
        rows, weights = batch.updates, batch.weights.to(batch.updates.dtype)
        median = weighted_mean(rows, weights)
        distances = distances_to(rows, median)
        objective = float(weights @ distances)
        steps = 0
        final_weights = weights  # those of the current estimate
        while steps < self.params.iterations:
            steps += 1
            final_weights = weights / distances.clamp_min(self.params.eps)
            median = weighted_mean(rows, final_weights)
            distances = distances_to(rows, median)
            previous, objective = objective, float(weights @ distances)
            if previous - objective <= self.params.tolerance * objective:
                break
        info = {"iterations": steps, "objective": objective}
        contributions = mean_contributions(rows, final_weights)
        return Decision(aggregate=median, score=distances, info=info, contributions=contributions)
