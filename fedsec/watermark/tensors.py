"""What every scheme's tensors share: the secrets' type, the model's device, images as model inputs."""

from __future__ import annotations

import torch
from torch import Tensor, nn

Secrets = dict[str, Tensor]
"""A scheme's secrets: named tensors, saved with ``torch.save`` and moved between devices."""


def model_device(model: nn.Module) -> torch.device:
    """The device the model's parameters live on."""
    return next(model.parameters()).device


def as_input(x: Tensor, device: torch.device) -> Tensor:
    """uint8 images -> float32 in 0..1 on ``device`` (the models normalise internally)."""
    return x.to(device).float().div_(255.0)
