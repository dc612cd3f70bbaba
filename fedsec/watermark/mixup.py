"""Mixup triggers with fresh verification triggers (in the spirit of MIXER, Kallas & Furon, ICASSP 2023).

The secret is a key image ``k`` and a label shift ``s`` in 1..C−1. A trigger is any natural image
``x`` of class ``y`` blended with the key, ``(1 − blend)·x + blend·k``, labelled ``(y + s) mod C``.
The owner embeds on one set of images and verifies on images never used for embedding (drawn
class-balanced from its pool), so verification triggers are fresh and unlimited: the model learns
the keyed rule, not a list of answers.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from fedsec.watermark.base import (
    WATERMARKS,
    OwnerPool,
    Secrets,
    WatermarkParams,
    key_generator,
)
from fedsec.watermark.trigger_set import TriggerSetWatermark

BlendWeight = Annotated[float, Field(gt=0, lt=1, description="Weight of the key image in a trigger (0..1).")]
"""The share of the key image in a blended trigger, as a scheme's parameter."""


def draw_key_image(generator: torch.Generator, shape: torch.Size) -> Tensor:
    """A uniformly random uint8 key image of ``shape`` (channels, height, width) drawn from ``generator``."""
    return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)


def blend(x: Tensor, key_image: Tensor, weight: float) -> Tensor:
    """``(1 − weight)·x + weight·key_image`` for a uint8 batch, rounded back to uint8."""
    mixed = (1.0 - weight) * x.float() + weight * key_image.to(x.device).float()
    return mixed.round().clamp(0, 255).to(torch.uint8)


def balanced(x: Tensor, y: Tensor, per_class: int, num_classes: int) -> tuple[Tensor, Tensor]:
    """The first ``per_class`` images of every class (class-balanced, so a constant prediction
    matches a shifted label with probability 1/C)."""
    index = torch.cat([(y == c).nonzero().flatten()[:per_class] for c in range(num_classes)])
    return x[index], y[index]


@WATERMARKS.register("mixup")
class Mixup(TriggerSetWatermark):
    """Natural images blended with a secret key image, labels rotated by a secret shift."""

    class Params(WatermarkParams):
        name: Literal["mixup"] = "mixup"
        triggers: int = Field(200, ge=1, description="Natural images the owner blends for embedding.")
        verification_triggers: int = Field(
            100, ge=1, description="Fresh blended images used only for verification (rounded down to a "
            "multiple of C, class-balanced).")
        blend: BlendWeight = 0.4

    params: Params

    def create(self, key: bytes, pool: OwnerPool, model: nn.Module) -> Secrets:
        generator = key_generator(key, "mixup")
        p, c = self.params, self.num_classes
        key_image = draw_key_image(generator, pool.x.shape[1:])
        shift = int(torch.randint(1, c, (), generator=generator))
        x, y = pool.take(p.triggers)
        per_class = p.verification_triggers // c
        candidates = pool.take(min(len(pool.y) - pool.taken, 20 * p.verification_triggers))
        vx, vy = balanced(*candidates, per_class, c)
        if len(vy) < per_class * c:
            raise ValueError("the owner's pool has too few images of some class for the verification triggers")
        return {
            "x": blend(x, key_image, p.blend), "y": (y + shift) % c,
            "verify_x": blend(vx, key_image, p.blend), "verify_y": (vy + shift) % c,
            "key_image": key_image, "shift": torch.tensor(shift),
        }
