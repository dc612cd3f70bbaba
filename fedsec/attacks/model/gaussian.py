"""Gaussian attack: send noise instead of, or on top of, the update."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from fedsec.attacks.model.base import MODEL_ATTACKS, ModelAttack, ModelAttackContext, ModelAttackParams


@MODEL_ATTACKS.register("gaussian")
class Gaussian(ModelAttack):
    """Δ' = Δ + σ·ε (add) or σ·ε (replace), ε ~ N(0, I) drawn from the context's generator."""

    class Params(ModelAttackParams):
        name: Literal["gaussian"] = "gaussian"
        sigma: float = Field(
            1.0, ge=0.0, description="σ, standard deviation of the noise per coordinate (update units)."
        )
        mode: Literal["add", "replace"] = Field("add", description="Add the noise to the update, or send noise alone.")

    params: Params

    def __call__(self, update: Tensor, ctx: ModelAttackContext) -> Tensor:
        g = ctx.generator
        noise = self.params.sigma * torch.randn(update.shape, generator=g, device=g.device).to(update)
        return update + noise if self.params.mode == "add" else noise
