"""Min-Max (Shejwalkar & Houmansadr 2021): no farther from any benign update than benign updates are from each other."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from fedsec.attacks.model.agr_agnostic import AgrAgnosticAttack, AgrAgnosticParams
from fedsec.attacks.model.base import MODEL_ATTACKS


@MODEL_ATTACKS.register("minmax")
class MinMax(AgrAgnosticAttack):
    """Largest γ with max_i ‖Δ' − ∇_i‖² ≤ max_{i,j} ‖∇_i − ∇_j‖²."""

    class Params(AgrAgnosticParams):
        name: Literal["minmax"] = "minmax"

    params: Params

    def constraints(
        self, a: Tensor, b: Tensor, c: Tensor, squared_distances: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One constraint per benign update: ‖Δ' − ∇_i‖² ≤ the largest benign pairwise squared distance."""
        return a.expand_as(b), b, c - squared_distances.max()
