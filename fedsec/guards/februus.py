"""Februus (Doan, Abbasnejad and Ranasinghe, ACSAC 2020): remove the region Grad-CAM finds most
influential on the model's decision, then inpaint it from clean data.

Grad-CAM (Selvaraju et al., ICCV 2017) weighs the last convolution's activation maps by the mean
gradient of the predicted class's logit, keeps the positive part, upsamples it to the image and
scales it to 0..1; pixels at or above ``mask_threshold`` are removed and restored by an inpainter
trained on the server's clean data. A trigger that drives the decision is where Grad-CAM points,
and the inpainter, which never saw it, does not put it back.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from fedsec.guards.base import GUARDS
from fedsec.guards.inpainting import MaskSampler, Purifier, PurifierParams


def grad_cam(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """(B, 1, H, W) Grad-CAM of images ``x`` in 0..1 for the class the model predicts, at its last
    convolution, upsampled (bilinear) and min-max scaled to 0..1 per image."""
    layer = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
    maps: list[Tensor] = []
    hook = layer.register_forward_hook(lambda _m, _i, out: maps.append(out))
    model.eval()
    cams = []
    try:
        for batch in x.split(batch_size):
            maps.clear()
            with torch.enable_grad():
                logits = model(batch.detach().requires_grad_(True))
                chosen = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
                (grad,) = torch.autograd.grad(chosen, maps[0])
            cam = F.relu((grad.mean((2, 3), keepdim=True) * maps[0]).sum(1, keepdim=True)).detach()
            cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
            low = cam.amin((2, 3), keepdim=True)
            cams.append((cam - low) / (cam.amax((2, 3), keepdim=True) - low).clamp_min(1e-12))
    finally:
        hook.remove()
    return torch.cat(cams)


@GUARDS.register("februus")
class Februus(Purifier):
    """Removes the region Grad-CAM points at and inpaints it."""

    class Params(PurifierParams):
        name: Literal["februus"] = "februus"
        mask_threshold: float = Field(0.7, gt=0, le=1, description="Grad-CAM value (0..1 of each image's range) "
                                      "at or above which a pixel is removed (the authors' CIFAR-10 setting).")
        patch: int = Field(4, ge=1, le=64, description="Side, in pixels, of the squares the inpainter learns "
                           "to fill during training.")
        train_ratio: float = Field(0.25, gt=0, lt=1, description="Share of the squares masked in each "
                                   "training image of the inpainter.")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.params: Februus.Params = params

    def training_masks(self, size: tuple[int, int]) -> MaskSampler:
        return MaskSampler(size, self.params.patch, self.params.train_ratio)

    def restore(self, model: nn.Module, x: Tensor) -> Tensor:
        assert self.inpainter is not None, "fit first"
        mask = (grad_cam(model, x, self.params.batch_size) >= self.params.mask_threshold).float()
        return self.inpainter(x, mask)
