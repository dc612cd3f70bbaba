"""ALIE, "A Little Is Enough" (Baruch et al. 2019): hide inside the benign spread, coordinate by coordinate."""

from __future__ import annotations

from statistics import NormalDist
from typing import Literal

from pydantic import Field
from torch import Tensor

from fedsec.attacks.model.base import MODEL_ATTACKS, ModelAttack, ModelAttackContext, ModelAttackParams
from fedsec.attacks.model.statistics import coordinate_std


def alie_z(num_clients: int, num_malicious: int) -> float:
    """Baruch et al.'s z_max for n clients of which m attack.

    s = ⌊n/2 + 1⌋ − m benign clients must side with the attackers for a majority;
    z_max = Φ⁻¹((n − s)/n), Φ the standard normal CDF (Algorithm 1 of the paper; some
    later code uses Φ⁻¹((n − m − s)/(n − m)) instead). ValueError when no finite z exists
    (the attackers alone already form a majority, or there is no attacker).
    """
    s = num_clients // 2 + 1 - num_malicious
    if num_malicious < 1 or s < 1:
        raise ValueError(f"ALIE has no finite z for {num_malicious} attackers among {num_clients} clients")
    return NormalDist().inv_cdf((num_clients - s) / num_clients)


@MODEL_ATTACKS.register("alie")
class ALIE(ModelAttack):
    """Δ' = μ − z·σ, μ and σ the coordinate-wise mean and std of the benign updates the attackers see.

    With ``ctx.benign_updates`` None σ is zero and the attack sends the client's own update.
    """

    class Params(ModelAttackParams):
        name: Literal["alie"] = "alie"
        z: float | None = Field(
            None, description="Shift in benign standard deviations; None = z_max from n and m (Baruch et al.)."
        )

    params: Params

    def __call__(self, update: Tensor, ctx: ModelAttackContext) -> Tensor:
        z = self.params.z if self.params.z is not None else alie_z(ctx.num_clients_per_round, ctx.num_malicious)
        benign = ctx.benign_reference(update)
        return benign.mean(dim=0) - z * coordinate_std(benign)
