"""SIG (Barni, Kallas & Tondi 2019): clean-label backdoor with an additive column signal."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from fedsec.attacks.data.base import DATA_ATTACKS, DataAttack, DataAttackParams, to_uint8

Signal = Literal["ramp", "triangle", "sinusoid"]


@DATA_ATTACKS.register("sig")
class SIG(DataAttack):
    """Adds Δ·v(j) to every pixel of column j, only on target-class samples, labels kept.

    v(j) = j / m (ramp, 0..1), sin(2π j f / m) (sinusoid, −1..1), or the triangle wave
    in phase with that sinusoid (−1..1), for columns j = 0 … m − 1 of an m-pixel width.
    """

    class Params(DataAttackParams):
        name: Literal["sig"] = "sig"
        target_mode: Literal["all-to-one"] = Field("all-to-one", description="Clean-label: all-to-one only.")
        signal: Signal = Field("sinusoid", description="Shape of the horizontal signal.")
        train_strength: float = Field(
            20.0, ge=0.0, le=255.0, description="Δ_tr, signal amplitude on poisoned training images (0–255 scale)."
        )
        test_strength: float = Field(
            40.0, ge=0.0, le=255.0, description="Δ_ts, signal amplitude on test images (0–255 scale)."
        )
        frequency: float = Field(6.0, gt=0.0, description="f, periods of the sinusoid/triangle across the width.")

    params: Params

    def eligible(self, y: Tensor) -> Tensor:
        """Clean-label: only samples already of the target class are poisoned."""
        return y == self.params.target_label

    def _train_trigger(self, x: Tensor) -> Tensor:
        return self.add_signal(x, self.params.train_strength)

    def _test_trigger(self, x: Tensor) -> Tensor:
        return self.add_signal(x, self.params.test_strength)

    def add_signal(self, x: Tensor, strength: float) -> Tensor:
        """``x`` + strength·v(column), rounded and clamped to uint8."""
        width = x.shape[-1]
        phase = torch.arange(width, device=x.device, dtype=torch.float32) / width
        if self.params.signal == "ramp":
            v = phase
        else:
            v = torch.sin(2 * math.pi * self.params.frequency * phase)
            if self.params.signal == "triangle":
                v = torch.asin(v) * (2 / math.pi)
        return to_uint8(x.float() + strength * v)
