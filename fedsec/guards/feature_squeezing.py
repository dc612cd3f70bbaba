"""Feature squeezing (Xu et al., NDSS 2018): an input whose prediction moves when it is squeezed.

Squeezers reduce the input space: bit-depth reduction and median smoothing. The score is the
largest L1 distance between the model's softmax output on the input and on a squeezed copy;
inputs above the threshold set on clean inputs at the configured FRR are rejected.
"""

from __future__ import annotations

from typing import Literal, Self

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from fedsec.guards.base import GUARDS, Guard, GuardParams, images, probabilities


def reduce_bit_depth(x: Tensor, bits: int) -> Tensor:
    """Images in 0..1 quantised to ``bits`` bits per channel: round(x · (2^bits − 1)) / (2^bits − 1)."""
    levels = 2**bits - 1
    return torch.round(x * levels) / levels


def _symmetric_index(n: int, before: int, after: int, device: torch.device) -> Tensor:
    """Indices of a length-``n`` axis padded by mirroring with the edge repeated (d c b a | a b c d)."""
    i = torch.arange(-before, n + after, device=device)
    return torch.where(i < 0, -i - 1, torch.where(i >= n, 2 * n - 1 - i, i))


def median_smooth(x: Tensor, size: int) -> Tensor:
    """Per-channel median over a ``size`` × ``size`` window of images (B, C, H, W), edges mirrored.

    Matches ``scipy.ndimage.median_filter(mode="reflect")``: for an even size the window spans
    size // 2 pixels before the centre, and the median of an even count is the upper middle value.
    """
    before, after = size // 2, size - 1 - size // 2
    h, w = x.shape[-2:]
    padded = x[..., _symmetric_index(h, before, after, x.device), :][..., _symmetric_index(w, before, after, x.device)]
    windows = padded.unfold(-2, size, 1).unfold(-2, size, 1).flatten(-2)
    return windows.sort(-1).values[..., size * size // 2]


@GUARDS.register("feature-squeezing")
class FeatureSqueezing(Guard):
    """Rejects inputs whose softmax output moves (L1) when they are squeezed."""

    fits_on_clean = False

    class Params(GuardParams):
        name: Literal["feature-squeezing"] = "feature-squeezing"
        bit_depth: int | None = Field(
            1, ge=1, le=7, description="Bits per channel kept by the bit-depth squeezer (none: not used; "
            "Xu et al.'s MNIST choice: 1).")
        median_size: int | None = Field(
            2, ge=2, le=11, description="Side, in pixels, of the median smoothing window (none: not used; "
            "Xu et al.'s MNIST choice: 2).")
        batch_size: int = Field(1024, ge=1, le=65_536, description="Images per forward pass.")

        @model_validator(mode="after")
        def _a_squeezer(self) -> Self:
            if self.bit_depth is None and self.median_size is None:
                raise ValueError("give bit_depth, median_size or both")
            return self

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.params: FeatureSqueezing.Params = params

    def squeezed(self, x: Tensor) -> list[Tensor]:
        """The squeezed copies of images ``x`` in 0..1, one per configured squeezer."""
        out = []
        if self.params.bit_depth is not None:
            out.append(reduce_bit_depth(x, self.params.bit_depth))
        if self.params.median_size is not None:
            out.append(median_smooth(x, self.params.median_size))
        return out

    def score(self, model: nn.Module, x: Tensor) -> Tensor:
        """Largest L1 distance between the softmax output on the input and on each squeezed copy."""
        x = images(x)
        p = probabilities(model, x, self.params.batch_size)
        distances = [(p - probabilities(model, s, self.params.batch_size)).abs().sum(1) for s in self.squeezed(x)]
        return torch.stack(distances).amax(0)
