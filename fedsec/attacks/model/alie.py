"""ALIE, "A Little Is Enough" (Baruch et al. 2019): hide inside the benign spread, coordinate by coordinate."""

from __future__ import annotations

from statistics import NormalDist
from typing import Literal

from pydantic import Field
from torch import Tensor

from fedsec.attacks.model.base import MODEL_ATTACKS, ModelAttack, ModelAttackContext, ModelAttackParams
from fedsec.attacks.model.statistics import coordinate_std


def alie_z(num_clients: int, num_malicious: int) -> float:
    """Baruch et al.'s z_max for a federation of n clients of which m attack.

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
    """Δ' = μ + z·σ, μ and σ the coordinate-wise mean and population std of the benign updates
    the attackers see; z = z_max from the federation's n and m (:func:`alie_z`).

    The paper takes n and m of the whole federation, where every client takes part in every
    round; z from the clients sampled in one round would be 0 for a single sampled attacker.
    The sign and the std follow the authors' code (github.com/moranant/attacking_distributed_learning,
    ``malicious.py``): it sends the gradient μ_g − z·σ_g with σ_g from ``np.var``, and the
    server steps by −η·g, so in terms of updates Δ = −η·g it is μ + z·σ. ``variant: ndss21``
    is Shejwalkar & Houmansadr's reimplementation (NDSS 2021): gradient μ_g + z·σ_g, unbiased
    std, i.e. Δ' = μ − z·σ. With ``ctx.benign_updates`` None σ is zero and the attack sends
    the client's own update.
    """

    class Params(ModelAttackParams):
        name: Literal["alie"] = "alie"
        z: float | None = Field(
            None, description="Shift in benign standard deviations (dimensionless); None = z_max from the "
            "federation's n (data.num_clients) and m (its malicious clients), Baruch et al.'s Algorithm 1.",
        )
        variant: Literal["authors", "ndss21"] = Field(
            "authors",
            description="authors: μ + z·σ with the population std, Baruch et al.'s code (gradient μ − z·σ, "
            "an update being −η × the gradient); ndss21: μ − z·σ with the unbiased std, Shejwalkar & "
            "Houmansadr's reimplementation (NDSS 2021), which later benchmarks copy.",
        )

    params: Params

    def uses_benign_updates(self) -> bool:
        return True

    def __call__(self, update: Tensor, ctx: ModelAttackContext) -> Tensor:
        z = self.params.z if self.params.z is not None else alie_z(ctx.num_clients, ctx.num_malicious)
        authors = self.params.variant == "authors"
        benign = ctx.benign_reference(update)
        shift = z * coordinate_std(benign, unbiased=not authors)
        return benign.mean(dim=0) + shift if authors else benign.mean(dim=0) - shift
