"""Keyed labels on natural images (after ROSE, Kallas & Furon, IEEE WIFS 2022): only the key holder
knows a trigger's label, and anyone given the key can recompute it.

ROSE's three security levels fix what a label depends on (s triggers, C classes):

- level 0: the labels are drawn from the key alone; the images play no part, so a usurper with a
  key of its own can push any images towards its labels by adversarial examples;
- level 1: label i = HMAC-SHA256(key, image i) mod C; changing an image changes its own label;
- level 2: one HMAC-SHA256 over the whole trigger set (in order) seeds every label, so changing
  one image changes all s labels.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from fedsec.watermark.base import WATERMARKS, OwnerPool, Secrets, WatermarkParams
from fedsec.watermark.trigger_set import TriggerSetWatermark

SecurityLevel = Annotated[Literal[0, 1, 2], Field(
    description="ROSE security level: 0 labels drawn from the key alone (images play no part), 1 label = "
    "HMAC-SHA256(key, image) mod C per image, 2 one HMAC over the whole trigger set seeds every label (changing "
    "one image changes them all). Default 1: keyed-labels' labels before levels existed, so earlier runs are "
    "unchanged.")]
"""A ROSE security level, as a scheme's parameter."""


def _label(digest: bytes, num_classes: int) -> int:
    """The first 64 bits of ``digest`` mod ``num_classes``."""
    return int.from_bytes(digest[:8], "big") % num_classes


def _expanded(seed: bytes, count: int, num_classes: int, device: torch.device) -> Tensor:
    """``count`` labels HMAC-SHA256(seed, i) mod ``num_classes``, i = 0..count-1 (int64)."""
    labels = [_label(hmac.new(seed, i.to_bytes(8, "big"), hashlib.sha256).digest(), num_classes) for i in range(count)]
    return torch.tensor(labels, dtype=torch.int64, device=device)


def key_labels(key: bytes, count: int, num_classes: int, device: torch.device | None = None) -> Tensor:
    """Level 0: ``count`` labels drawn from the key alone (int64)."""
    seed = hmac.new(key, b"rose-level-0", hashlib.sha256).digest()
    return _expanded(seed, count, num_classes, device or torch.device("cpu"))


def keyed_labels(key: bytes, images: Tensor, num_classes: int) -> Tensor:
    """Level 1: HMAC-SHA256(key, image bytes) mod ``num_classes`` for each uint8 image (int64, on the
    images' device)."""
    labels = [_label(hmac.new(key, image.numpy().tobytes(), hashlib.sha256).digest(), num_classes)
              for image in images.detach().cpu().contiguous()]
    return torch.tensor(labels, dtype=torch.int64, device=images.device)


def joint_labels(key: bytes, images: Tensor, num_classes: int) -> Tensor:
    """Level 2: every label expanded from one HMAC-SHA256(key, bytes of all uint8 images in order)
    (int64, on the images' device)."""
    seed = hmac.new(key, images.detach().cpu().contiguous().numpy().tobytes(), hashlib.sha256).digest()
    return _expanded(seed, len(images), num_classes, images.device)


def rose_labels(key: bytes, images: Tensor, num_classes: int, level: int) -> Tensor:
    """The labels of trigger images ``images`` (uint8) at ROSE security ``level`` (0, 1 or 2)."""
    if level == 0:
        return key_labels(key, len(images), num_classes, images.device)
    if level == 1:
        return keyed_labels(key, images, num_classes)
    if level == 2:
        return joint_labels(key, images, num_classes)
    raise ValueError(f"ROSE security level {level} is not 0, 1 or 2")


@WATERMARKS.register("keyed-labels")
class KeyedLabels(TriggerSetWatermark):
    """Natural images from the owner's pool, labelled by the keyed hash of their pixels (ROSE level 1),
    of the whole set (level 2), or by the key alone (level 0)."""

    class Params(WatermarkParams):
        name: Literal["keyed-labels"] = "keyed-labels"
        triggers: int = Field(100, ge=1, description="Trigger images n (natural images the owner holds).")
        level: SecurityLevel = 1

    params: Params

    def create(self, key: bytes, pool: OwnerPool, model: nn.Module) -> Secrets:
        x, _ = pool.take(self.params.triggers)
        return {"x": x.clone(), "y": rose_labels(key, x, self.num_classes, self.params.level)}
