"""DBA, distributed backdoor attack (Xie et al. 2020): each attacker stamps one part of a global pattern."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal, Self

import torch
from pydantic import Field, NonNegativeInt
from torch import Tensor

from fedsec.attacks.data.base import DATA_ATTACKS, DataAttack, DataAttackParams, check_images


@DATA_ATTACKS.register("dba")
class DBA(DataAttack):
    """White bars laid out in a grid form the global trigger; part i is bar i (row-major).

    The defaults are Xie et al.'s MNIST layout: four 1×4 bars, two per row, 2 pixels
    apart, from the top-left corner. Training stamps this attacker's part (the full
    pattern when ``local_part`` is None); the test trigger is always the full pattern.
    Xie et al.'s reference configurations scale the poisoned updates (``scale_weights_poison``
    100, server lr 0.1) in the single-shot setting only; multi-shot attackers send them
    unscaled. Pair this attack with the ``scaling`` model attack for the former.
    """

    class Params(DataAttackParams):
        name: Literal["dba"] = "dba"
        num_parts: int = Field(4, ge=1, description="k, number of local parts (one per attacker, reused cyclically).")
        part_height: int = Field(1, ge=1, description="Height of one part, in pixels.")
        part_width: int = Field(4, ge=1, description="Width of one part, in pixels.")
        gap: NonNegativeInt = Field(2, description="Pixels between neighbouring parts, both directions.")
        parts_per_row: int = Field(2, ge=1, description="Parts side by side before starting a new row.")
        offset: tuple[NonNegativeInt, NonNegativeInt] = Field(
            (0, 0), description="(x, y) = (column, row) of the pattern's top-left pixel."
        )

    params: Params

    def __init__(self, params: Params, local_part: int | None = None) -> None:
        """``local_part``: which part (0 … num_parts − 1) this attacker stamps; None = the full pattern."""
        super().__init__(params)
        if local_part is not None and not 0 <= local_part < params.num_parts:
            raise ValueError(f"local_part {local_part} is not in 0..{params.num_parts - 1}")
        self.local_part = local_part

    @classmethod
    def for_attacker(cls, params: DataAttackParams, attacker_index: int | None = None) -> Self:
        """The ``attacker_index``-th attacker stamps part ``attacker_index mod num_parts``."""
        assert isinstance(params, cls.Params)
        return cls(params, None if attacker_index is None else attacker_index % params.num_parts)

    def part_masks(self, height: int, width: int, device: torch.device | None = None) -> Tensor:
        """Bool ``(num_parts, height, width)``: the pixels of each part; ValueError if one leaves the image."""
        p = self.params
        index = torch.arange(p.num_parts, device=device)
        top = p.offset[1] + (index // p.parts_per_row) * (p.part_height + p.gap)
        left = p.offset[0] + (index % p.parts_per_row) * (p.part_width + p.gap)
        if int(top.max()) + p.part_height > height or int(left.max()) + p.part_width > width:
            raise ValueError(f"the DBA pattern does not fit a {height}x{width} image")
        rows = torch.arange(height, device=device).view(1, -1, 1)
        cols = torch.arange(width, device=device).view(1, 1, -1)
        in_rows = (rows >= top.view(-1, 1, 1)) & (rows < (top + p.part_height).view(-1, 1, 1))
        in_cols = (cols >= left.view(-1, 1, 1)) & (cols < (left + p.part_width).view(-1, 1, 1))
        return in_rows & in_cols

    def apply_part(self, x: Tensor, part: int | None) -> Tensor:
        """Stamp one local part (None: the full pattern) in white on every row of uint8 ``x``."""
        check_images(x)
        masks = self.part_masks(*x.shape[-2:], device=x.device)
        mask = masks.any(0) if part is None else masks[part]
        return x.masked_fill(mask, 255)

    def _train_trigger(self, x: Tensor) -> Tensor:
        return self.apply_part(x, self.local_part)

    def _test_trigger(self, x: Tensor) -> Tensor:
        return self.apply_part(x, None)

    def test_triggers(self) -> dict[str, Callable[[Tensor], Tensor]]:
        """``asr`` for the full pattern and ``asr_part<i>`` for each local part alone."""
        parts = {f"asr_part{i}": partial(self.apply_part, part=i) for i in range(self.params.num_parts)}
        return {**super().test_triggers(), **parts}

    def check(self, image_shape: tuple[int, int, int], num_classes: int) -> list[str]:
        try:
            self.part_masks(*image_shape[1:])
        except ValueError as exc:
            return [f"offset: {exc} (move it, or shrink it: num_parts, part_height, part_width, gap, parts_per_row)"]
        return []
