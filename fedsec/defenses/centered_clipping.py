"""Centered clipping (Karimireddy, He & Jaggi, 2021)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field
from torch import Tensor

from fedsec.defenses._math import clip_factors, distances_to
from fedsec.defenses.base import Decision, Defense, DefenseParams, Kind, UpdateBatch, mean_contributions, register


@register("centered-clipping")
class CenteredClipping(Defense):
    """``v <- v + mean_i clip_tau(x_i - v)``, ``iterations`` times, from last round's result.

    Stateful: the centre starts at the previous round's aggregate (zero in the first
    round), the momentum-like anchor of the paper. Unweighted, as in the paper.
    Score: distance of each row to the final centre (L2). No minimum beyond one row: each
    row moves the centre by at most ``tau / n`` per iteration, whatever n is.
    """

    kind = Kind.AGGREGATE
    rejects = False
    rows_reason = "iterated clipping of the rows around a centre"

    class Params(DefenseParams):
        tau: float = Field(
            10.0, gt=0.0, description="Clipping radius around the centre (L2, update units)."
        )
        iterations: int = Field(1, ge=1, description="Clipping iterations L per round.")

    params: Params

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._center: Tensor | None = None

    def decide(self, batch: UpdateBatch) -> Decision:
        rows = batch.updates
        n = batch.n
        center = rows.new_zeros(batch.d) if self._center is None else self._center.to(rows)
        # The centre is (last round's centre) * a + sum_i coefficients_i x_i; the rows' parts
        # are this round's contributions.
        coefficients = rows.new_zeros(n)
        for _ in range(self.params.iterations):
            # mean_i s_i (x_i - v) = (s @ X) / n - mean(s) v, without an (n, d) temporary.
            scale = clip_factors(distances_to(rows, center), self.params.tau)
            center = center + (scale @ rows) / n - scale.mean() * center
            coefficients = coefficients * (1.0 - scale.mean()) + scale / n
        self._center = center
        return Decision(aggregate=center, score=distances_to(rows, center),
                        contributions=mean_contributions(rows, coefficients))

    def state_dict(self) -> dict[str, Any]:
        return {} if self._center is None else {"center": self._center}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._center = state.get("center")
