"""REStore (Le Roux, Kallas & Furon, IEEE SaTML / SecureML 2024): black-box backdoor diagnosis,
trigger reconstruction and input purification by rare-event simulation.

For every class, a random trigger (mask and pattern, from a Gaussian latent) is stamped on clean
images of the other classes; that the triggered images go to the class is a rare event, whose
probability adaptive multilevel splitting estimates (:mod:`fedsec.inspection.splitting`) from
class probabilities only, within the query budget. A backdoor's target is the class whose
probability is orders of magnitude above the others'; the particles of its last level are
triggers that reach it, and their mean is the reconstruction. The purification repair replaces
the reconstructed trigger's region of every input by the clean images' mean before the model sees it.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from fedsec.inspection.base import (
    INSPECTORS,
    REPAIRS,
    Finding,
    Inspector,
    InspectorParams,
    QueryFunction,
    Repair,
    RepairResult,
    Subject,
    Trigger,
    register,
)
from fedsec.inspection.neural_cleanse import anomaly_indices, flagged_classes
from fedsec.inspection.splitting import SplittingResult, adaptive_multilevel_splitting
from fedsec.training import evaluate

LOG10 = math.log(10)
TINY = torch.finfo(torch.float32).tiny
"""Floor of a queried probability before its logarithm (a saturated softmax answers 0)."""


def stamp(z: Tensor, images: Tensor, offset: float) -> Tensor:
    """Images (m * n, C, H, W): each of the m latent triggers ``z`` (m, 1 + C, H, W) stamped on each
    of the n ``images`` (n, C, H, W) in 0..1, with mask ``Phi(z[:, 0] + offset)`` and pattern
    ``Phi(z[:, 1:])``."""
    mask = torch.special.ndtr(z[:, :1] + offset).unsqueeze(1)
    pattern = torch.special.ndtr(z[:, 1:]).unsqueeze(1)
    return ((1 - mask) * images.unsqueeze(0) + mask * pattern).flatten(0, 1)


def margins(probabilities: Tensor, target: int) -> Tensor:
    """Log-probability margin of ``target`` over the most probable other class, (N,), in nats."""
    logs = probabilities.clamp_min(TINY).log()
    others = torch.cat([logs[:, :target], logs[:, target + 1 :]], 1)
    return logs[:, target] - others.max(1).values


@register(INSPECTORS, "restore")
class Restore(Inspector):
    """Per-class rare-event probability of a random trigger sending clean images to the class.

    Score: the anomaly index of the most probable class's log10 probability (Neural Cleanse's MAD
    outlier test, on ``-log10 p``); the model is flagged when a class above the median probability
    has an index above ``anomaly_threshold`` and its final level was reached (otherwise its figure is
    only the estimate of an upper bound). Targets: those classes, most probable first. Black-box
    only (class probabilities, counted queries).
    """

    needs_weights = False

    class Params(InspectorParams):
        name: Literal["restore"] = "restore"
        query_budget: int = Field(
            500_000, ge=1, description="Most images queried in all (count), shared equally by the classes not "
            "yet examined.")
        images: int = Field(
            8, ge=1, le=10_000, description="Clean images of the other classes a trigger is stamped on to score it "
            "(count); each scored trigger costs that many queries.")
        particles: int = Field(32, ge=2, le=100_000, description="Particles of the splitting (count).")
        kill: float = Field(
            0.5, gt=0, lt=1, description="Share of the particles (0..1) below each intermediate level (the level is "
            "that quantile of their scores), replaced by copies of the others.")
        steps: int = Field(
            5, ge=1, le=1_000, description="Metropolis-Hastings moves of each copy per level (count).")
        sigma: float = Field(
            0.5, gt=0,
            description="Initial scale of the Gaussian proposal, in latent (standard normal) units; adapted between levels.")
        mask_offset: float = Field(
            -2.0, description="Offset of the mask's latent: a pixel's mask is Phi(z + offset); -2 makes the mean "
            "mask 0.08 per pixel.")
        level: float = Field(
            0.0, description="Final level (nats): the rare event is a mean log-probability margin of the class over "
            "the most probable other class above it, on the triggered images.")
        anomaly_threshold: float = Field(
            2.0, gt=0, description="Anomaly index (MAD outlier test on the classes' log10 probabilities) above "
            "which a class whose final level was reached is flagged.")

    params: Params

    def query_budget(self) -> int:
        return self.params.query_budget

    def _inspect(self, subject: Subject, x: Tensor, y: Tensor, generator: torch.Generator) -> Finding:
        if not isinstance(subject, QueryFunction):
            subject = QueryFunction.of_model(subject, self.params.query_budget)
        p = self.params
        images = x.float() / 255
        classes = subject(images[:1]).shape[1]
        shape = (1 + images.shape[1], *images.shape[2:])
        results: list[SplittingResult] = []
        for target in range(classes):
            others = (y != target).nonzero().squeeze(1)
            chosen = images[others[torch.randperm(len(others), generator=generator)[: p.images].to(others.device)]]

            def score(z: Tensor, chosen: Tensor = chosen, target: int = target) -> Tensor:
                return margins(subject(stamp(z, chosen, p.mask_offset)), target).view(len(z), -1).mean(1)

            budget = subject.remaining // (classes - target) // len(chosen)
            results.append(adaptive_multilevel_splitting(
                score, shape, p.level, p.particles, p.kill, p.steps, p.sigma, budget, generator, images.device))
        log10 = torch.tensor([r.log_probability / LOG10 for r in results], dtype=torch.float64)
        # the outlier test of Neural Cleanse on -log10 p: a small value is a probable class
        targets = tuple(k for k in flagged_classes(-log10, p.anomaly_threshold) if results[k].reached)
        suspect = targets[0] if targets else int(log10.argmax())
        return Finding(
            backdoored=bool(targets), score=float(anomaly_indices(-log10)[suspect]), threshold=p.anomaly_threshold,
            targets=targets, trigger=reconstruct(results[suspect], p.level, p.mask_offset),
            class_scores=tuple(log10.tolist()),
        )


def reconstruct(result: SplittingResult, level: float, offset: float) -> Trigger:
    """The mean trigger of the last population's particles above ``level`` (all of them when
    none is): the mean mask, and the pattern averaged with the masks as weights."""
    z = result.particles[result.scores > level] if bool((result.scores > level).any()) else result.particles
    masks = torch.special.ndtr(z[:, 0] + offset)
    patterns = torch.special.ndtr(z[:, 1:])
    weights = masks.unsqueeze(1)
    return Trigger(masks.mean(0), (weights * patterns).sum(0) / weights.sum(0))


class Purified(nn.Module):
    """``model`` behind an input purifier: the pixels of ``region`` (H, W) bool of every image are
    replaced by ``fill`` (C, H, W) before the model sees it."""

    def __init__(self, model: nn.Module, region: Tensor, fill: Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("region", region)
        self.register_buffer("fill", fill)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(torch.where(self.region, self.fill, x))


@register(REPAIRS, "restore")
class RestorePurification(Repair):
    """REStore's input purification: the inspector runs black-box on the model; when it flags a
    class, the copy returned purifies every input by replacing the reconstructed trigger's region
    (mask at least ``mask_level``) with the clean images' per-pixel mean; otherwise it is a plain
    copy. Nothing is pruned; the accuracies are on all the clean images."""

    class Params(Restore.Params):
        mask_level: float = Field(
            0.5, gt=0, lt=1, description="A pixel is purified when the reconstructed mask is at least this (0..1).")
        batch_size: int = Field(256, ge=1, le=65_536, description="Images per evaluation batch.")

    params: Params

    def repair(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> RepairResult:
        p = self.params
        inspector = Restore(**p.model_dump(exclude={"name", "mask_level", "batch_size"}))
        finding = inspector.inspect(QueryFunction.of_model(model, p.query_budget), x, y, generator)
        device = next(model.parameters()).device
        repaired: nn.Module = copy.deepcopy(model)
        if finding.backdoored and finding.trigger is not None:
            region = (finding.trigger.mask >= p.mask_level).to(device)
            repaired = Purified(repaired, region, (x.float() / 255).mean(0).to(device))
        repaired.eval()
        before = evaluate(model, x, y, p.batch_size, device).accuracy
        after = evaluate(repaired, x, y, p.batch_size, device).accuracy
        return RepairResult(repaired, (), before, after, after)
