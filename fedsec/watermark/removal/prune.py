"""Global magnitude pruning: zero the smallest-magnitude weights across all layers."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from fedsec.watermark.removal.base import (
    REMOVALS,
    Removal,
    RemovalContext,
    RemovalParams,
    weights,
)


def prune_global(model: nn.Module, rate: float) -> int:
    """Zero exactly round(rate × count) of the model's weights (parameters of two or more
    dimensions; biases are kept), those of smallest magnitude over all layers together.
    Returns how many were zeroed."""
    tensors = weights(model)
    magnitudes = torch.cat([w.detach().abs().flatten() for w in tensors])
    count = round(rate * magnitudes.numel())
    keep = torch.ones_like(magnitudes, dtype=torch.bool)
    keep[torch.topk(magnitudes, count, largest=False).indices] = False
    with torch.no_grad():
        for w, mask in zip(tensors, keep.split([w.numel() for w in tensors])):
            w.mul_(mask.view_as(w))
    return count


@REMOVALS.register("prune")
class Prune(Removal):
    """Global (not per-layer) magnitude pruning, no fine-tuning afterwards."""

    class Params(RemovalParams):
        name: Literal["prune"] = "prune"
        rate: float = Field(0.5, ge=0, le=1, description="Share of all weights set to zero (0..1).")

    params: Params
    strength = "rate"

    def __call__(self, model: nn.Module, context: RemovalContext) -> nn.Module:
        prune_global(model, self.params.rate)
        return model
