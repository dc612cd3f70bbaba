"""Min-Sum (Shejwalkar & Houmansadr 2021): no farther from the benign updates, in sum, than a benign update is."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor

from fedsec.attacks.model.agr_agnostic import AgrAgnosticAttack, AgrAgnosticParams
from fedsec.attacks.model.base import MODEL_ATTACKS


@MODEL_ATTACKS.register("minsum")
class MinSum(AgrAgnosticAttack):
    """Largest γ with Σ_i ‖Δ' − ∇_i‖² ≤ min_i Σ_j ‖∇_i − ∇_j‖².

    The bound is the smallest benign sum, as in the authors' code
    (github.com/vrt1shjwlkr/NDSS21-Model-Poisoning, ``our_attack_score``:
    ``min_score = torch.min(scores)``), which produced the paper's results; the paper's text
    writes the largest benign sum (``bound: max``), a looser bound and a larger γ.
    """

    class Params(AgrAgnosticParams):
        name: Literal["minsum"] = "minsum"
        bound: Literal["min", "max"] = Field(
            "min",
            description="Bound on the malicious update's sum of squared distances to the benign updates: the "
            "smallest (min, the authors' code) or the largest (max, the paper's text) such sum of a benign update.",
        )

    params: Params

    def constraints(
        self, a: Tensor, b: Tensor, c: Tensor, squared_distances: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """A single constraint: the sum over benign updates of the per-update quadratics."""
        sums = squared_distances.sum(dim=1)
        bound = sums.min() if self.params.bound == "min" else sums.max()
        return (a * b.numel()).reshape(1), b.sum().reshape(1), (c.sum() - bound).reshape(1)
