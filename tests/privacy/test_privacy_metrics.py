"""PSNR, SSIM, matching and ROC figures against hand-computed values and reference formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from fedsec.privacy.metrics import label_recovery, match_images, psnr, roc_figures, ssim


def test_psnr_by_hand() -> None:
    a = torch.zeros(2, 1, 4, 4)
    b = torch.stack([torch.full((1, 4, 4), 0.1), torch.full((1, 4, 4), 0.5)])
    # mse 0.01 -> 20 dB; mse 0.25 -> 10 log10(4) dB
    assert psnr(a, b).tolist() == pytest.approx([20.0, 10 * math.log10(4)], rel=1e-6)
    assert math.isinf(psnr(b, b)[0].item())


def test_ssim_of_identical_and_of_constant_images() -> None:
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert ssim(x, x).tolist() == pytest.approx([1.0] * 3, abs=1e-6)
    # Constant images: no variance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b, c1 = 0.2, 0.7, 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    constant = ssim(torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b))
    assert constant.item() == pytest.approx(expected, rel=1e-6)


def _ssim_restated(x: np.ndarray, y: np.ndarray, size: int = 11, sigma: float = 1.5) -> float:
    """Wang et al.'s SSIM written out window by window: Gaussian-weighted means, variances and
    covariance at every position where the window fits, then the mean of the index map."""
    t = np.arange(size) - (size - 1) / 2
    g = np.exp(-(t**2) / (2 * sigma**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 1) ** 2, (0.03 * 1) ** 2
    values = []
    for i in range(x.shape[0] - size + 1):
        for j in range(x.shape[1] - size + 1):
            px, py = x[i:i + size, j:j + size], y[i:i + size, j:j + size]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            values.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_agrees_with_the_formula_restated() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 20, 18, generator=gen)
    y = (x + 0.2 * torch.randn(2, 1, 20, 18, generator=gen)).clamp(0, 1)
    expected = [_ssim_restated(x[i, 0].double().numpy(), y[i, 0].double().numpy()) for i in range(2)]
    assert ssim(x, y).tolist() == pytest.approx(expected, abs=1e-6)
    assert max(expected) < 0.9  # the noise matters: not a comparison of near-identical images


def test_matching_finds_the_permutation() -> None:
    originals = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    order = torch.tensor([3, 0, 4, 1])
    noisy = (originals[order] + 0.05).clamp(0, 1)
    assert match_images(noisy, originals).tolist() == order.tolist()


def test_label_recovery_counts_multisets() -> None:
    assert label_recovery(torch.tensor([1, 1, 2]), torch.tensor([1, 2, 2])) == pytest.approx(2 / 3)
    assert label_recovery(torch.tensor([4]), torch.tensor([4])) == 1.0


def test_roc_figures_agree_with_sklearn() -> None:
    gen = torch.Generator().manual_seed(3)
    members = (torch.randn(3000, generator=gen) + 0.7).round(decimals=1)  # rounding makes ties
    nonmembers = torch.randn(2000, generator=gen).round(decimals=1)
    figures = roc_figures(members, nonmembers, (0.001, 0.01, 0.1))
    truth = np.r_[np.ones(3000), np.zeros(2000)]
    scores = torch.cat([members, nonmembers]).numpy()
    assert figures.auc == pytest.approx(roc_auc_score(truth, scores), abs=1e-9)
    fpr, tpr, _ = roc_curve(truth, scores)
    for bound, value in figures.tpr_at_fpr.items():
        assert value == pytest.approx(tpr[fpr <= bound].max(), abs=1e-9)
