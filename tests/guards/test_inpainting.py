"""The shared restoration pieces: patch masks, the inpainter's contract, the SSIM map."""

from __future__ import annotations

import torch

from fedsec.guards.inpainting import MaskSampler, patch_mask, random_token_mask, ssim_map, train_inpainter


def test_patch_mask_covers_whole_patches() -> None:
    tokens = torch.tensor([[1.0, 0, 0, 1]])
    mask = patch_mask(tokens, 2, (5, 5))
    assert mask.shape == (1, 1, 5, 5)
    assert mask[0, 0, :2, :2].eq(1).all() and mask[0, 0, 2:4, 2:4].eq(1).all()
    assert mask[0, 0, :2, 2:4].eq(0).all() and mask[0, 0, 4].eq(0).all() and mask[0, 0, :, 4].eq(0).all()


def test_random_token_mask_hides_the_given_count() -> None:
    mask = random_token_mask(50, 16, 12, torch.Generator().manual_seed(0))
    assert mask.sum(1).eq(12).all() and not mask.eq(mask[0]).all()


def test_ssim_map_by_hand() -> None:
    """Constant images a and b: no variance, SSIM = (2ab + C1) / (a² + b² + C1) everywhere."""
    a = torch.full((1, 1, 12, 12), 0.2, dtype=torch.float64)
    b = torch.full((1, 1, 12, 12), 0.6, dtype=torch.float64)
    expected = (2 * 0.2 * 0.6 + 0.01**2) / (0.2**2 + 0.6**2 + 0.01**2)
    assert torch.allclose(ssim_map(a, b), torch.full((1, 12, 12), expected, dtype=torch.float64), atol=1e-9)
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim_map(x, x), torch.ones(2, 12, 12), atol=1e-5)
    assert (ssim_map(x, x.flip(-1)) < 0.9).any()


def test_inpainter_keeps_unmasked_pixels_and_learns_the_masked_ones() -> None:
    """Images of one grey level each: a trained inpainter restores hidden squares from the rest
    far better than the mean fill it starts from."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(400, 1, 1, 1, generator=g).expand(-1, -1, 8, 8).contiguous()
    sampler = MaskSampler((8, 8), 2, 0.25)
    inpainter = train_inpainter(x, sampler, 8, 80, 1e-2, 32, g)
    mask = sampler(100, torch.Generator().manual_seed(1))
    out = inpainter(x[:100], mask)
    assert torch.equal(out * (1 - mask), x[:100] * (1 - mask))
    error = ((out - x[:100]) ** 2 * mask).sum() / mask.sum()
    baseline = ((inpainter.fill - x[:100]) ** 2 * mask).sum() / mask.sum()
    assert error < 0.5 * baseline, (error, baseline)
