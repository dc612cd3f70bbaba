"""BadNets (Gu et al. 2017): stamp a small fixed patch and relabel to the target."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt
from torch import Tensor

from fedsec.attacks.data.base import DATA_ATTACKS, DataAttack, DataAttackParams
from fedsec.attacks.data.patterns import PatternKind, make_pattern

Corner = Literal["top-left", "top-right", "bottom-left", "bottom-right"]


@DATA_ATTACKS.register("badnets")
class BadNets(DataAttack):
    """Replaces a ``patch_size`` square of every poisoned image by a fixed pattern."""

    class Params(DataAttackParams):
        name: Literal["badnets"] = "badnets"
        patch_size: int = Field(3, ge=1, description="Side of the square patch, in pixels (3–5 usual).")
        position: Corner | tuple[NonNegativeInt, NonNegativeInt] = Field(
            "bottom-right",
            description="Corner the patch touches, or (x, y) = (column, row) of its top-left pixel.",
        )
        pattern: PatternKind = Field(
            "white", description="Patch content: white (255), checkerboard, or random pixels drawn from seed."
        )
        seed: int = Field(0, description="Seed of the random pattern (unused by the other patterns).")

    params: Params

    def _train_trigger(self, x: Tensor) -> Tensor:
        p = self.params
        channels, height, width = x.shape[1:]
        row, col = patch_origin(p.position, p.patch_size, height, width)
        out = x.clone()
        patch = make_pattern(p.pattern, channels, p.patch_size, p.patch_size, p.seed)
        out[:, :, row : row + p.patch_size, col : col + p.patch_size] = patch.to(x.device)
        return out


def patch_origin(position: Corner | tuple[int, int], size: int, height: int, width: int) -> tuple[int, int]:
    """(row, column) of the top-left pixel of a ``size``-pixel square patch; ValueError if it does not fit."""
    if isinstance(position, tuple):
        col, row = position
    else:
        row = 0 if position.startswith("top") else height - size
        col = 0 if position.endswith("left") else width - size
    if row < 0 or col < 0 or row + size > height or col + size > width:
        raise ValueError(f"a {size}-pixel patch at {position} does not fit a {height}x{width} image")
    return row, col
