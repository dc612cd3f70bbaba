"""RoSe-Mix (El Hajjar et al., MAKE 2025): ROSE's keyed, hash-derived labels on mixup triggers.

Each trigger is a natural image from the owner's pool blended with a secret key image drawn from
the key, ``(1 − blend)·x + blend·k`` (as in the ``mixup`` scheme), and labelled by ROSE's keyed
hash of the blended image at the chosen security level (see :mod:`.keyed_labels`). The labels
owe nothing to the image's class, so they cannot be predicted from the task; verification uses
the embedding triggers, whose labels anyone given the key recomputes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from fedsec.watermark.base import WATERMARKS, OwnerPool, Secrets, WatermarkParams, key_generator
from fedsec.watermark.keyed_labels import SecurityLevel, rose_labels
from fedsec.watermark.mixup import BlendWeight, blend, draw_key_image
from fedsec.watermark.trigger_set import TriggerSetWatermark


@WATERMARKS.register("rose-mix")
class RoseMix(TriggerSetWatermark):
    """Natural images blended with a secret key image, labelled by the keyed hash of the blend."""

    class Params(WatermarkParams):
        name: Literal["rose-mix"] = "rose-mix"
        triggers: int = Field(100, ge=1, description="Trigger images n (natural images the owner blends).")
        blend: BlendWeight = 0.4
        level: SecurityLevel = 1

    params: Params

    def create(self, key: bytes, pool: OwnerPool, model: nn.Module) -> Secrets:
        key_image = draw_key_image(key_generator(key, "rose-mix"), pool.x.shape[1:])
        x, _ = pool.take(self.params.triggers)
        triggers = blend(x, key_image, self.params.blend)
        return {"x": triggers, "y": rose_labels(key, triggers, self.num_classes, self.params.level),
                "key_image": key_image}
