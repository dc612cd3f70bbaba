"""Model replacement (Bagdasaryan et al. 2020): scale the malicious update so that it survives averaging."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor

from fedsec.attacks.model.base import MODEL_ATTACKS, ModelAttack, ModelAttackContext, ModelAttackParams


class ReplacementParams(ModelAttackParams):
    """The scale factor of model replacement, shared by scaling and constrain-and-scale."""

    gamma: float | None = Field(
        None, gt=0.0, description="Scale factor γ (dimensionless); None = the model-replacement factor that "
        "`weighting` gives.",
    )
    weighting: Literal["examples", "clients"] = Field(
        "examples",
        description="Aggregation that γ = None replaces the global model under: examples = N/(n_a·η) for "
        "example-weighted FedAvg, N the examples of the round's sampled clients and n_a the attacker's "
        "(exact when every sampled client replies); clients = n/η, n the clients sampled this round, "
        "Bagdasaryan et al.'s factor for equally weighted clients (an unweighted mean).",
    )

    def scale_factor(self, ctx: ModelAttackContext) -> float:
        """``gamma`` if given, else the model-replacement factor of ``weighting``."""
        if self.gamma is not None:
            return self.gamma
        if self.weighting == "examples":
            return ctx.round_examples / (ctx.own_examples * ctx.server_lr)
        return ctx.num_clients_per_round / ctx.server_lr


@MODEL_ATTACKS.register("scaling")
class Scaling(ModelAttack):
    """Δ' = γ·Δ.

    With the other updates cancelling out (late in training, Bagdasaryan et al.'s assumption),
    the global model w + η·Σ_i (n_i/N)·Δ_i becomes the attacker's model w + Δ when
    γ = N/(n_a·η). The paper writes n/η for n equally weighted clients (``weighting: clients``);
    fedsec's FedAvg weights by examples, so the default is the factor for that weighting. The
    attacker knows the round's sampled clients and their example counts (in simulation the
    adversary has that view); a client that drops out or is rejected makes γ too large.
    """

    class Params(ReplacementParams):
        name: Literal["scaling"] = "scaling"

    params: Params

    def __call__(self, update: Tensor, ctx: ModelAttackContext) -> Tensor:
        return update * self.params.scale_factor(ctx)
