"""IPM, inner product manipulation (Xie, Koyejo & Gupta 2019): make the aggregate point uphill."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor

from fedsec.attacks.model.base import MODEL_ATTACKS, ModelAttack, ModelAttackContext, ModelAttackParams


@MODEL_ATTACKS.register("ipm")
class IPM(ModelAttack):
    """Δ' = −ε·μ, μ the mean of the benign updates the attackers see (the own update when none)."""

    class Params(ModelAttackParams):
        name: Literal["ipm"] = "ipm"
        epsilon: float = Field(
            0.1, gt=0.0, description="ε (dimensionless): small (≈0.1) beats Krum, large (≈100) beats mean/median."
        )

    params: Params

    def uses_benign_updates(self) -> bool:
        return True

    def __call__(self, update: Tensor, ctx: ModelAttackContext) -> Tensor:
        return -self.params.epsilon * ctx.benign_reference(update).mean(dim=0)
