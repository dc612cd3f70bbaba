"""AGR-agnostic attacks of Shejwalkar & Houmansadr (NDSS 2021), the math Min-Max and Min-Sum share.

Every attacker sends Δ' = μ + γ·p: μ the mean of the benign updates ∇_1 … ∇_m the
attackers see, p a perturbation direction, γ ≥ 0 as large as a distance constraint
allows. With d_i = μ − ∇_i, the squared distance from Δ' to ∇_i is the quadratic
‖p‖²·γ² + 2(d_i·p)·γ + ‖d_i‖², so each constraint reads a·γ² + 2b·γ + c ≤ 0 and its
largest admissible γ is the larger root. This is the exact value the paper's binary
search on γ converges to; γ = 0 always satisfies both constraints.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from fedsec.attacks.model.base import ModelAttack, ModelAttackContext, ModelAttackParams
from fedsec.attacks.model.statistics import coordinate_std

Perturbation = Literal["unit-vector", "std", "sign"]


class AgrAgnosticParams(ModelAttackParams):
    """Parameters Min-Max and Min-Sum share."""

    perturbation: Perturbation = Field(
        "std",
        description="Direction p: unit-vector −μ/‖μ‖, std −σ (coordinate-wise benign std), "
        "or sign −sign(μ).",
    )


def perturbation_direction(benign: Tensor, kind: Perturbation) -> Tensor:
    """The direction p ``(d,)`` for benign updates ``(m, d)``."""
    mean = benign.mean(dim=0)
    if kind == "unit-vector":
        return -mean / mean.norm().clamp_min(1e-12)
    if kind == "std":
        return -coordinate_std(benign)
    return -mean.sign()


def largest_root(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """Largest γ with a·γ² + 2b·γ + c ≤ 0, element-wise, for a > 0 and c ≤ 0 (clamped to ≥ 0)."""
    return ((-b + (b.square() - a * c).clamp_min(0).sqrt()) / a).clamp_min(0)


class AgrAgnosticAttack(ModelAttack):
    """Δ' = μ + γ·p with γ the largest value meeting every constraint of :meth:`constraints`.

    Needs at least two benign updates in ``ctx.benign_updates``; with the own update
    alone there is no benign spread and the attack sends that update unchanged.
    """

    params: AgrAgnosticParams

    def uses_benign_updates(self) -> bool:
        return True

    @abstractmethod
    def constraints(
        self, a: Tensor, b: Tensor, c: Tensor, squared_distances: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Coefficients of the constraints on γ, each a·γ² + 2b·γ + c ≤ 0.

        Given a = ‖p‖², b_i = d_i·p and c_i = ‖d_i‖² for each benign update (``(m,)``),
        and the benign pairwise squared distances ``(m, m)``.
        """

    def __call__(self, update: Tensor, ctx: ModelAttackContext) -> Tensor:
        benign = ctx.benign_reference(update).double()
        mean = benign.mean(dim=0)
        direction = perturbation_direction(benign, self.params.perturbation)
        if not direction.any():
            return mean.to(update)
        deviations = mean - benign
        squared_distances = torch.cdist(benign, benign).square()
        a, b, c = self.constraints(
            direction.square().sum(), deviations @ direction, deviations.square().sum(dim=1), squared_distances
        )
        gamma = largest_root(a, b, c).min()
        return (mean + gamma * direction).to(update)
