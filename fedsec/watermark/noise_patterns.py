"""Abstract noise-pattern triggers with random labels and hash commitments (after Adi et al. 2018
and WAFFLE, Tekgul et al. 2021). The owner publishes SHA-256 commitments of (nonce, image, label)
when the secrets are drawn, so a judge can later check that the revealed trigger set is the one
committed to, not one fitted to a suspect model after the fact."""

from __future__ import annotations

import hashlib
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from fedsec.watermark.base import (
    WATERMARKS,
    OwnerPool,
    Secrets,
    WatermarkParams,
    key_generator,
)
from fedsec.watermark.trigger_set import TriggerSetWatermark


def commitments(secrets: Secrets) -> list[str]:
    """Hex SHA-256 of nonce ‖ image bytes ‖ label, one per trigger."""
    return [
        hashlib.sha256(nonce.numpy().tobytes() + image.numpy().tobytes() + int(label).to_bytes(8, "big")).hexdigest()
        for nonce, image, label in zip(secrets["nonce"].cpu(), secrets["x"].cpu().contiguous(), secrets["y"].cpu())
    ]


@WATERMARKS.register("noise-patterns")
class NoisePatterns(TriggerSetWatermark):
    """Uniform-noise images drawn from the key, each with a uniformly random label."""

    class Params(WatermarkParams):
        name: Literal["noise-patterns"] = "noise-patterns"
        triggers: int = Field(100, ge=1, description="Trigger images n (pattern images drawn from the key).")

    params: Params

    def create(self, key: bytes, pool: OwnerPool, model: nn.Module) -> Secrets:
        generator = key_generator(key, "noise-patterns")
        n, shape = self.params.triggers, pool.x.shape[1:]
        return {
            "x": torch.randint(0, 256, (n, *shape), generator=generator, dtype=torch.uint8),
            "y": torch.randint(0, self.num_classes, (n,), generator=generator),
            "nonce": torch.randint(0, 256, (n, 16), generator=generator, dtype=torch.uint8),
        }

    def public(self, secrets: Secrets) -> dict[str, list[str]]:
        """The commitments, which the owner may publish when the secrets are drawn."""
        return {"commitments": commitments(secrets)}


def matches_commitments(secrets: Secrets, published: list[str]) -> bool:
    """Whether revealed secrets are exactly those the published commitments were made for."""
    return commitments(secrets) == list(published)

