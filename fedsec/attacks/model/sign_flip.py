"""Sign flipping: push the global model against the descent direction."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor

from fedsec.attacks.model.base import MODEL_ATTACKS, ModelAttack, ModelAttackContext, ModelAttackParams


@MODEL_ATTACKS.register("sign-flip")
class SignFlip(ModelAttack):
    """Δ' = −scale·Δ."""

    class Params(ModelAttackParams):
        name: Literal["sign-flip"] = "sign-flip"
        scale: float = Field(1.0, gt=0.0, description="Magnitude multiplier applied with the flip (dimensionless).")

    params: Params

    def __call__(self, update: Tensor, ctx: ModelAttackContext) -> Tensor:
        return -self.params.scale * update
