"""Scores of privacy attacks: image similarity of reconstructions, ROC figures of membership."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of images (N, C, H, W) in 0..1, per image (N,)
    (inf for identical images)."""
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(dim=1)
    return (10 * torch.log10(1 / mse)).float()


def _gaussian_window(size: int, sigma: float, channels: int, device: torch.device) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).expand(channels, 1, size, size).contiguous()


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) of images (N, C, H, W) in 0..1, per image (N,).

    Gaussian window of ``window`` pixels and standard deviation ``sigma`` over the positions
    where it fits whole (narrowed to the largest odd size that fits smaller images), K1 = 0.01,
    K2 = 0.03, population (co)variances; the mean over positions and channels.
    """
    c1, c2 = 0.01**2, 0.03**2
    a, b = a.double(), b.double()
    side = min(a.shape[-2:])
    window = min(window, side if side % 2 else side - 1)
    w = _gaussian_window(window, sigma, a.shape[1], a.device)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(x, w, groups=a.shape[1])

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return index.flatten(1).mean(dim=1).float()


def match_images(reconstructed: torch.Tensor, originals: torch.Tensor) -> torch.Tensor:
    """For each reconstruction, the index of a distinct original, the pairing that maximises the
    summed PSNR (a reconstruction's order says nothing of which image it is). Needs N <= M."""
    n, m = len(reconstructed), len(originals)
    pairs = psnr(reconstructed.repeat_interleave(m, dim=0), originals.repeat(n, 1, 1, 1)).view(n, m)
    finite = pairs.clamp(max=1e6).cpu().numpy()  # identical pairs have infinite PSNR
    from scipy.optimize import linear_sum_assignment  # here: scipy.optimize costs ~0.5 s of every client's start-up

    rows, cols = linear_sum_assignment(finite, maximize=True)
    return torch.as_tensor(cols[rows.argsort()], dtype=torch.long)


def label_recovery(recovered: torch.Tensor, true: torch.Tensor) -> float:
    """Share of recovered labels found in the true labels, counted as multisets (0..1)."""
    k = int(max(recovered.max(), true.max())) + 1
    common = torch.minimum(torch.bincount(recovered.cpu(), minlength=k), torch.bincount(true.cpu(), minlength=k))
    return common.sum().item() / len(recovered)


@dataclass(frozen=True)
class RocFigures:
    """How well scores separate members from non-members."""

    auc: float
    tpr_at_fpr: dict[float, float]
    """FPR bound -> highest TPR of a threshold whose FPR is at most the bound."""


def roc_figures(members: torch.Tensor, nonmembers: torch.Tensor, fprs: tuple[float, ...]) -> RocFigures:
    """AUC (ties count half) and TPR at each FPR bound of the rule "member when score >= t"."""
    scores = torch.cat([members, nonmembers]).double().cpu()
    is_member = torch.cat([torch.ones(len(members)), torch.zeros(len(nonmembers))]).double()
    order = torch.argsort(scores, descending=True, stable=True)
    scores, is_member = scores[order], is_member[order]
    # One ROC point per distinct score: everything at or above it is called a member.
    last = torch.cat([scores[1:] != scores[:-1], torch.tensor([True])])
    tpr = torch.cat([torch.zeros(1), is_member.cumsum(0)[last] / len(members)])
    fpr = torch.cat([torch.zeros(1), (1 - is_member).cumsum(0)[last] / len(nonmembers)])
    auc = torch.trapezoid(tpr, fpr).item()
    return RocFigures(auc, {bound: tpr[fpr <= bound].max().item() for bound in fprs})
