"""Blended injection (Chen et al. 2017): mix a full-image pattern into the input."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor

from fedsec.attacks.data.base import DATA_ATTACKS, DataAttack, DataAttackParams, to_uint8
from fedsec.attacks.data.patterns import PatternKind, make_pattern


@DATA_ATTACKS.register("blended")
class Blended(DataAttack):
    """x' = round((1 − alpha)·x + alpha·pattern), pixel-wise on the 0–255 scale."""

    class Params(DataAttackParams):
        name: Literal["blended"] = "blended"
        alpha: float = Field(0.15, ge=0.0, le=1.0, description="Blend ratio of the pattern (0.1–0.2 usual).")
        pattern: PatternKind = Field(
            "random",
            description="Full-image pattern: random noise drawn from seed (the usual stand-in for the "
            "Hello Kitty image), checkerboard or white.",
        )
        seed: int = Field(0, description="Seed of the random pattern.")

    params: Params

    def _train_trigger(self, x: Tensor) -> Tensor:
        p = self.params
        pattern = make_pattern(p.pattern, *x.shape[1:], seed=p.seed).to(x.device)
        return to_uint8((1.0 - p.alpha) * x.float() + p.alpha * pattern.float())
