"""Keyed labels on natural images (after ROSE, Kallas & Furon): the label of each trigger image
is HMAC-SHA256(secret key, image bytes) mod C, so only the key holder knows it and anyone given
the key can recompute it from the image alone."""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from fedsec.watermark.base import WATERMARKS, OwnerPool, Secrets, WatermarkParams
from fedsec.watermark.trigger_set import TriggerSetWatermark


def keyed_labels(key: bytes, images: Tensor, num_classes: int) -> Tensor:
    """HMAC-SHA256(key, image bytes) mod ``num_classes`` for each uint8 image (int64, on the images' device)."""
    labels = [
        int.from_bytes(hmac.new(key, image.numpy().tobytes(), hashlib.sha256).digest()[:8], "big") % num_classes
        for image in images.detach().cpu().contiguous()
    ]
    return torch.tensor(labels, dtype=torch.int64, device=images.device)


@WATERMARKS.register("keyed-labels")
class KeyedLabels(TriggerSetWatermark):
    """Natural images from the owner's pool, labelled by the keyed hash of their pixels."""

    class Params(WatermarkParams):
        name: Literal["keyed-labels"] = "keyed-labels"
        triggers: int = Field(100, ge=1, description="Trigger images n (natural images the owner holds).")

    params: Params

    def create(self, key: bytes, pool: OwnerPool, model: nn.Module) -> Secrets:
        x, _ = pool.take(self.params.triggers)
        return {"x": x.clone(), "y": keyed_labels(key, x, self.num_classes)}
