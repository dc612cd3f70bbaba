"""Bullseye Polytope (Aghakhani et al., EuroS&P 2021): Convex Polytope with the target at the centre."""

from __future__ import annotations

from typing import Literal

from fedsec.attacks.data.base import DATA_ATTACKS
from fedsec.attacks.data.convex_polytope import ConvexPolytope, PolytopeParams


@DATA_ATTACKS.register("bullseye-polytope")
class BullseyePolytope(ConvexPolytope):
    """The poisons' mean feature is pulled onto the target's: coefficients fixed at 1/K."""

    learn_coefficients = False

    class Params(PolytopeParams):
        name: Literal["bullseye-polytope"] = "bullseye-polytope"
