"""Min-Sum (Shejwalkar & Houmansadr 2021): no farther from the benign updates, in sum, than any benign update is."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from fedsec.attacks.model.agr_agnostic import AgrAgnosticAttack, AgrAgnosticParams
from fedsec.attacks.model.base import MODEL_ATTACKS


@MODEL_ATTACKS.register("minsum")
class MinSum(AgrAgnosticAttack):
    """Largest γ with Σ_i ‖Δ' − ∇_i‖² ≤ max_i Σ_j ‖∇_i − ∇_j‖²."""

    class Params(AgrAgnosticParams):
        name: Literal["minsum"] = "minsum"

    params: Params

    @staticmethod
    def constraints(
        a: Tensor, b: Tensor, c: Tensor, squared_distances: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """A single constraint: the sum over benign updates of the per-update quadratics."""
        bound = squared_distances.sum(dim=1).max()
        return (a * b.numel()).reshape(1), b.sum().reshape(1), (c.sum() - bound).reshape(1)
