"""Overwriting: the attacker embeds its own watermark of the same scheme with its own key."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import Field
from torch import nn

from fedsec.watermark.base import OwnerPool
from fedsec.watermark.removal.base import (
    REMOVALS,
    Removal,
    RemovalContext,
    RemovalParams,
)


@REMOVALS.register("overwrite")
class Overwrite(Removal):
    """Draws a second secret with the owner's scheme from the attacker's key and data, then embeds it
    exactly as the owner embeds (same loss, target 100%) for up to ``steps`` steps."""

    class Params(RemovalParams):
        name: Literal["overwrite"] = "overwrite"
        steps: int = Field(200, ge=1, description="Most embedding steps of the attacker's watermark.")
        fraction: float = Field(0.1, gt=0, le=1, description="Share of the training set the attacker holds (0..1).")
        lr: float | None = Field(None, gt=0, description="Learning rate (default: the owner's).")

    params: Params
    strength = "steps"

    def __call__(self, model: nn.Module, context: RemovalContext) -> nn.Module:
        p = self.params
        key = hashlib.sha256(f"attacker-key:{context.seed}".encode()).digest()
        x, y = context.attacker_data(p.fraction)
        half = len(y) // 2
        secrets = context.scheme.create(key, OwnerPool(x[half:], y[half:]), model)
        secrets = {k: v.to(next(model.parameters()).device) for k, v in secrets.items()}
        settings = context.embedding.model_copy(
            update={"max_steps": p.steps, "target": 1.0, "lr": p.lr or context.embedding.lr})
        context.scheme.embed(model, secrets, x[:half], y[:half], settings, context.generator("overwrite"))
        return model.eval()
