"""WaNet (Nguyen & Tran 2021): an imperceptible backdoor made of a smooth image warp."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from fedsec.attacks.data.base import DATA_ATTACKS, DataAttack, DataAttackParams, PoisonedBatch, choose_rows, to_uint8


@DATA_ATTACKS.register("wanet")
class WaNet(DataAttack):
    """Resamples poisoned images through a fixed smooth warping field drawn from ``seed``.

    The field is a ``grid_size``² grid of uniform random offsets, normalised to mean
    absolute value 1, upsampled bicubically to the image, scaled by ``strength`` / image
    size (in grid_sample's [−1, 1] coordinates) and added to the identity grid. In noise
    mode, some clean rows are warped by that field plus per-pixel random jitter of up to
    about half a pixel and keep their labels, so that the model learns only the exact warp.
    """

    class Params(DataAttackParams):
        name: Literal["wanet"] = "wanet"
        grid_size: int = Field(
            4, ge=1, description="k, side of the control grid of the warping field (control points).")
        strength: float = Field(
            0.5, ge=0.0, description="s, warping strength: mean displacement about s/2 pixels along each axis."
        )
        noise_fraction: float = Field(
            0.2,
            ge=0.0,
            le=1.0,
            description="Fraction (0–1) of the rows not backdoored that get a randomly jittered warp and "
            "keep their label (noise mode).",
        )
        seed: int = Field(0, description="Seed of the warping field (the attacker's secret).")

    params: Params

    def warp_grid(self, height: int, width: int, device: torch.device | None = None) -> Tensor:
        """The backdoor sampling grid, ``(1, height, width, 2)`` in grid_sample's (x, y) coordinates."""
        p = self.params
        generator = torch.Generator().manual_seed(p.seed)
        control = torch.rand(1, 2, p.grid_size, p.grid_size, generator=generator) * 2 - 1
        control = control / control.abs().mean()
        field = F.interpolate(control, size=(height, width), mode="bicubic", align_corners=True)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        identity = torch.stack((xs, ys), dim=-1).unsqueeze(0)
        grid = identity + p.strength * field.permute(0, 2, 3, 1) / _size(height, width)
        return grid.clamp(-1, 1).to(device)

    def _train_trigger(self, x: Tensor) -> Tensor:
        return _resample(x, self.warp_grid(*x.shape[-2:], device=x.device))

    def poison(self, x: Tensor, y: Tensor, generator: torch.Generator) -> PoisonedBatch:
        """Backdoor as the base class does, then warp ``noise_fraction`` of the other rows with jitter.

        The returned mask marks the backdoored rows only; noise-mode rows are changed too
        but keep their labels and are not poisoned in the ASR sense.
        """
        batch = super().poison(x, y, generator)
        noisy = choose_rows(~batch.mask, self.params.noise_fraction, generator)
        if noisy.any():
            height, width = x.shape[-2:]
            shape = (int(noisy.sum()), height, width, 2)
            jitter = torch.rand(shape, generator=generator, device=generator.device).to(x.device) * 2 - 1
            grid = self.warp_grid(height, width, x.device) + jitter / _size(height, width, x.device)
            batch.x[noisy] = _resample(x[noisy], grid.clamp(-1, 1))
        return batch


def _size(height: int, width: int, device: torch.device | None = None) -> Tensor:
    """Image size along grid_sample's (x, y) axes, to turn pixel-scale offsets into grid units."""
    return torch.tensor([width, height], dtype=torch.float32, device=device)


def _resample(x: Tensor, grid: Tensor) -> Tensor:
    """Bilinear resampling of uint8 ``x`` through ``grid`` (broadcast over the batch), back to uint8."""
    grid = grid.expand(x.shape[0], -1, -1, -1)
    return to_uint8(F.grid_sample(x.float(), grid, mode="bilinear", align_corners=True))
