"""TABOR (Guo, Wang, Xing, Du & Song, arXiv 1908.01763, 2019): Neural Cleanse's trigger
reverse-engineering with four extra regularisers and a trigger-quality metric ranked by the same
MAD outlier test.

The regularisers and their default weights follow the authors' released loss (as re-used by
TrojanZoo and UsmannK/TABOR): R1 penalises an overly large trigger (L1 + L2 of the mask, and of the
pattern outside the mask), R2 a scattered one (squared differences of neighbouring pixels of the
mask and of that pattern), R3 a blocking one (the images with the mask's region removed should
keep their own label: cross-entropy to the true labels), R4 an overlaying one (the masked pattern
alone should already reach the class: cross-entropy to the target). The pattern terms are computed
on the 0..255 scale of the reference code so that its weights apply unchanged.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from fedsec.inspection.base import INSPECTORS, Subject, Trigger, register
from fedsec.inspection.neural_cleanse import NeuralCleanse, Penalty, Reconstruction

PIXEL_SCALE = 255.0
"""The reference code's pattern scale (its weights are set for patterns in 0..255)."""
MASK_LEVEL = 0.5
"""A mask pixel belongs to the trigger's region when its value is at least this (0..1)."""
FLOOR = 1e-12
"""Keeps the metric's logarithms finite for an empty, flat or never successful trigger."""


def squared_variation(image: Tensor) -> Tensor:
    """Sum of squared differences of vertically and horizontally neighbouring pixels of an
    (..., H, W) tensor (R2's scatter term)."""
    return (image[..., 1:, :] - image[..., :-1, :]).square().sum() + (image[..., :, 1:] - image[..., :, :-1]).square().sum()


def regularisers(mask: Tensor, pattern: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """R1 and R2 of mask (H, W) and pattern (C, H, W) in 0..1: mask size, pattern size outside
    the mask, mask scatter, pattern scatter (pattern on the 0..255 scale)."""
    outside = (1 - mask) * pattern * PIXEL_SCALE
    return (
        mask.abs().sum() + mask.square().sum(),
        outside.abs().sum() + outside.square().sum(),
        squared_variation(mask),
        squared_variation(outside),
    )


@register(INSPECTORS, "tabor")
class Tabor(NeuralCleanse):
    """Neural Cleanse's optimisation (its L1 cost schedule included) plus TABOR's regularisers,
    and the outlier test on TABOR's metric (white-box).

    Metric of a class's trigger: ``log(|m|_1 / HW) + log(R2(m * p) / HW) - log(acc_att) -
    log(acc_exp)``: small, smooth, effective and explained triggers rank low; the model is flagged
    when a class's metric is an outlier below the median (anomaly index above the threshold).
    """

    needs_weights = True

    class Params(NeuralCleanse.Params):
        name: Literal["tabor"] = "tabor"  # type: ignore[assignment]
        access: Literal["white-box"] = Field(  # type: ignore[assignment]
            "white-box", description="white-box only: R3, R4 and the explanation term need the model's gradients.")
        mask_size: float = Field(1e-6, ge=0, description="Weight of R1 on the mask (L1 + L2 of the mask).")
        pattern_size: float = Field(
            1e-5, ge=0, description="Weight of R1 on the pattern (L1 + L2 of the pattern outside the mask, 0..255 scale).")
        mask_scatter: float = Field(
            1e-7, ge=0, description="Weight of R2 on the mask (squared neighbour differences), dimensionless.")
        pattern_scatter: float = Field(
            1e-8, ge=0, description="Weight of R2 on the pattern outside the mask (squared neighbour differences, "
            "0..255 scale).")
        blocking: float = Field(
            0.0, ge=0, description="Weight of R3: cross-entropy of the images with the mask's region removed "
            "to their true labels (0 in the reference code).")
        overlaying: float = Field(
            1e-2, ge=0, description="Weight of R4: cross-entropy of the masked pattern alone to the class.")
        ranking: Literal["tabor", "l1"] = Field(
            "tabor", description="Statistic of the outlier test: tabor: the paper's trigger-quality metric; l1: "
            "the mask's L1 norm, as Neural Cleanse.")

    params: Params

    def _penalty(self, subject: Subject) -> Penalty:
        assert isinstance(subject, nn.Module)  # needs_weights: Inspector.inspect refuses query functions
        p = self.params

        def penalty(mask: Tensor, pattern: Tensor, x: Tensor, y: Tensor, target: int) -> Tensor:
            sizes = regularisers(mask, pattern)
            loss = p.mask_size * sizes[0] + p.pattern_size * sizes[1] + p.mask_scatter * sizes[2]
            loss = loss + p.pattern_scatter * sizes[3]
            if p.blocking:
                loss = loss + p.blocking * nn.functional.cross_entropy(subject((1 - mask) * x), y)
            if p.overlaying:
                overlay = subject((mask * pattern).unsqueeze(0))
                loss = loss + p.overlaying * nn.functional.cross_entropy(overlay, torch.tensor([target], device=x.device))
            return loss

        return penalty

    def _statistics(self, subject: Subject, found: list[Reconstruction], images: Tensor) -> Tensor:
        if self.params.ranking == "l1":
            return super()._statistics(subject, found, images)
        assert isinstance(subject, nn.Module)
        return torch.tensor([quality(subject, r.trigger, images, target) for target, r in enumerate(found)],
                            dtype=torch.float64)


def quality(model: nn.Module, trigger: Trigger, images: Tensor, target: int) -> float:
    """TABOR's metric of ``trigger`` for class ``target`` on clean ``images`` (N, C, H, W) in 0..1.

    ``acc_att``: share of the triggered images classified as the target; ``acc_exp``: mean share of
    the input-gradient saliency of the target's logit (``|x * dlogit/dx|`` summed over channels)
    that falls on the trigger's region (mask at least :data:`MASK_LEVEL`).
    """
    mask, pattern = trigger.mask, trigger.pattern
    area = mask.numel()
    triggered = trigger.apply(images).requires_grad_()
    model.eval()
    logits = model(triggered)
    (gradient,) = torch.autograd.grad(logits[:, target].sum(), triggered)
    saliency = (gradient * triggered).detach().abs().sum(1).flatten(1)
    region = (mask >= MASK_LEVEL).flatten()
    explained = (saliency[:, region].sum(1) / saliency.sum(1).clamp_min(FLOOR)).mean().item()
    attack = (logits.argmax(1) == target).float().mean().item()
    smoothness = squared_variation(mask * pattern).item()
    return (math.log(max(mask.abs().sum().item() / area, FLOOR)) + math.log(max(smoothness / area, FLOOR))
            - math.log(max(attack, FLOOR)) - math.log(max(explained, FLOOR)))
