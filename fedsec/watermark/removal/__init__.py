"""Removal attacks on a model file, one per module, registered by name."""

from fedsec.watermark.removal import distill, finetune, overwrite, prune, quantize  # noqa: F401
from fedsec.watermark.removal.base import (
    REMOVALS,
    Removal,
    RemovalContext,
    RemovalParams,
    build_removal,
)

__all__ = ["REMOVALS", "Removal", "RemovalContext", "RemovalParams", "build_removal"]
