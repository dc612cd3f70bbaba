"""Model replacement (Bagdasaryan et al. 2020): scale the malicious update so that it survives averaging."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor

from fedsec.attacks.model.base import MODEL_ATTACKS, ModelAttack, ModelAttackContext, ModelAttackParams


def scale_factor(gamma: float | None, ctx: ModelAttackContext) -> float:
    """``gamma`` if given, else the model-replacement factor n/η (clients per round / server learning rate).

    With FedAvg over n equally weighted clients and server learning rate η, an update
    scaled by n/η moves the global model onto the attacker's model.
    """
    return gamma if gamma is not None else ctx.num_clients_per_round / ctx.server_lr


@MODEL_ATTACKS.register("scaling")
class Scaling(ModelAttack):
    """Δ' = γ·Δ."""

    class Params(ModelAttackParams):
        name: Literal["scaling"] = "scaling"
        gamma: float | None = Field(
            None, gt=0.0, description="Scale factor γ (dimensionless); None = n/η, clients per round / server lr."
        )

    params: Params

    def __call__(self, update: Tensor, ctx: ModelAttackContext) -> Tensor:
        return update * scale_factor(self.params.gamma, ctx)
