"""Trigger patterns shared by the patch and blending attacks."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

PatternKind = Literal["white", "checkerboard", "random"]


def make_pattern(kind: PatternKind, channels: int, height: int, width: int, seed: int = 0) -> Tensor:
    """A uint8 ``(channels, height, width)`` pattern on the CPU.

    white: every pixel 255; checkerboard: 255 where row + column is even, 0 elsewhere
    (the same on every channel); random: i.i.d. uniform 0–255 per pixel and channel,
    drawn from ``seed`` so that every attacker holding the seed draws the same pattern.
    """
    if kind == "white":
        return torch.full((channels, height, width), 255, dtype=torch.uint8)
    if kind == "checkerboard":
        rows = torch.arange(height).unsqueeze(1)
        cols = torch.arange(width).unsqueeze(0)
        board = ((rows + cols) % 2 == 0).to(torch.uint8) * 255
        return board.expand(channels, height, width).clone()
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (channels, height, width), generator=generator, dtype=torch.uint8)
