"""Restoring masked image regions: a small convolutional inpainting autoencoder trained on the
server's clean images, patch masks, and the SSIM map that compares an image with its restoration.

BDMAE and Februus both restore the region they suspect of holding a trigger from what the clean
data taught the autoencoder; the trigger is not part of that data, so it is not restored.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from fedsec.attacks.data.base import to_uint8
from fedsec.guards.base import CleanData, Guard, GuardParams, images, probabilities


class Inpainter(nn.Module):
    """Fills the masked pixels of images in 0..1 (B, C, H, W) from the rest.

    Input: the image with its masked pixels set to the clean data's mean, and the mask (1: masked)
    as an extra channel; output: a full image in 0..1. Two stride-2 stages widen the receptive field
    to the whole 28 x 28 image.
    """

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels + 1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=2, dilation=2), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, 2 * width, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, channels, 3, padding=1), nn.Sigmoid(),
        )
        self.register_buffer("fill", torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """The restoration of ``x`` (B, C, H, W) where ``mask`` (B, 1, H, W) is 1; elsewhere ``x``."""
        occluded = x * (1 - mask) + self.fill * mask
        out = self.net(torch.cat([occluded, mask], 1))
        if out.shape[-2:] != x.shape[-2:]:  # sides that are not multiples of 4
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x * (1 - mask) + out * mask


def patch_mask(tokens: Tensor, patch: int, size: tuple[int, int]) -> Tensor:
    """Pixel mask (B, 1, H, W) from a token mask (B, H // patch · W // patch) on a grid of
    ``patch`` x ``patch`` pixel squares; pixels past the last whole patch are never masked."""
    h, w = size
    grid = tokens.view(len(tokens), 1, h // patch, w // patch).float()
    return F.pad(grid.repeat_interleave(patch, 2).repeat_interleave(patch, 3),
                 (0, w - w // patch * patch, 0, h - h // patch * patch))


def random_token_mask(batch: int, tokens: int, masked: int, generator: torch.Generator) -> Tensor:
    """(batch, tokens) float mask with ``masked`` tokens set to 1 per row, drawn uniformly."""
    order = torch.rand(batch, tokens, generator=generator).argsort(1)
    return (order < masked).float()


def train_inpainter(x: Tensor, mask_sampler: MaskSampler, width: int, steps: int, lr: float, batch_size: int,
                    generator: torch.Generator) -> Inpainter:
    """An :class:`Inpainter` trained with Adam on the squared error over the masked pixels of clean
    images ``x`` in 0..1; ``mask_sampler(batch, generator)`` draws the training masks (B, 1, H, W)."""
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(int(torch.randint(2**62, (), generator=generator)))
        model = Inpainter(x.shape[1], width).to(x.device)
    model.fill.copy_(x.mean((0, 2, 3), keepdim=True))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        batch = x[torch.randint(len(x), (min(batch_size, len(x)),), generator=generator).to(x.device)]
        mask = mask_sampler(len(batch), generator).to(x.device)
        loss = ((model(batch, mask) - batch) ** 2 * mask).sum() / mask.sum().clamp_min(1) / x.shape[1]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval().requires_grad_(False)


class MaskSampler:
    """Draws training masks: a share ``ratio`` of the ``patch`` x ``patch`` squares of an image."""

    def __init__(self, size: tuple[int, int], patch: int, ratio: float) -> None:
        self.size, self.patch = size, patch
        self.tokens = (size[0] // patch) * (size[1] // patch)
        self.masked = max(1, int(self.tokens * ratio))

    def __call__(self, batch: int, generator: torch.Generator) -> Tensor:
        return patch_mask(random_token_mask(batch, self.tokens, self.masked, generator), self.patch, self.size)


def _gaussian_window(size: int, sigma: float, like: Tensor) -> Tensor:
    g = torch.exp(-((torch.arange(size, device=like.device, dtype=like.dtype) - size // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_map(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """(B, H, W) structural similarity of images ``a`` and ``b`` in 0..1 (B, C, H, W), averaged over
    channels: Gaussian window (side ``window`` pixels, ``sigma`` pixels), replicate padding,
    C1 = 0.01², C2 = 0.03² (Wang et al.; the BDMAE authors' implementation)."""
    channels = a.shape[1]
    kernel = _gaussian_window(window, sigma, a).expand(channels, 1, window, window)
    pad = (window // 2,) * 4

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.pad(t, pad, mode="replicate"), kernel, groups=channels)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return value.mean(1)


class PurifierParams(GuardParams):
    """Parameters shared by the guards that restore a region with an :class:`Inpainter`."""

    reject: bool = Field(
        False, description="Also reject inputs whose score (1 − the model's probability, on the purified "
        "input, of the label it gave the input) is above the threshold set at frr; false: purify only.")
    inpainter_width: int = Field(16, ge=4, le=256, description="Channels of the inpainter's first layer.")
    inpainter_steps: int = Field(2000, ge=1, le=100_000, description="Adam steps of the inpainter's training (fewer "
                                 "save time and cost clean accuracy: docs/guards.md).")
    inpainter_lr: float = Field(2e-3, gt=0, description="Adam learning rate of the inpainter.")
    batch_size: int = Field(128, ge=1, le=65_536, description="Images per training step and per forward pass.")


class Purifier(Guard):
    """A guard that passes on inputs with a suspected region restored by an inpainter trained on
    the server's clean data (once per run: it does not depend on the deployed model)."""

    params: PurifierParams

    def __init__(self, params: PurifierParams) -> None:
        super().__init__(params)
        self.inpainter: Inpainter | None = None
        self.generator = torch.Generator()

    @property
    def rejects(self) -> bool:
        return self.params.reject

    @abstractmethod
    def training_masks(self, size: tuple[int, int]) -> MaskSampler:
        """The masks the inpainter learns to fill, for images of ``size`` (H, W)."""

    @abstractmethod
    def restore(self, model: nn.Module, x: Tensor) -> Tensor:
        """Images ``x`` in 0..1 with their suspected region restored."""

    def _fit(self, model: nn.Module, clean: CleanData, generator: torch.Generator) -> None:
        """Train the inpainter once; the restorations' random draws follow a seed from ``generator``."""
        if self.inpainter is None:
            p = self.params
            self.inpainter = train_inpainter(images(clean.x), self.training_masks(tuple(clean.x.shape[-2:])),
                                             p.inpainter_width, p.inpainter_steps, p.inpainter_lr, p.batch_size,
                                             generator)
        self.generator.manual_seed(int(torch.randint(2**62, (), generator=generator)))

    @torch.no_grad()
    def examine(self, model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
        """1 − the probability, on the purified input, of the label the model gave the input; and
        the purified uint8 inputs."""
        x01 = images(x)
        label = probabilities(model, x01, self.params.batch_size).argmax(1, keepdim=True)
        purified = self.restore(model, x01)
        kept = probabilities(model, purified, self.params.batch_size).gather(1, label).squeeze(1)
        return 1 - kept, to_uint8(purified * 255)

    def score(self, model: nn.Module, x: Tensor) -> Tensor:
        return self.examine(model, x)[0]

    def purify(self, model: nn.Module, x: Tensor) -> Tensor:
        return self.examine(model, x)[1]
