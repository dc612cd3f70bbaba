"""Poison Frogs (Shafahi et al., NeurIPS 2018): feature collision by forward-backward splitting."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from fedsec.attacks.data.base import DATA_ATTACKS
from fedsec.attacks.data.collision import CollisionAttack, CollisionParams, FeatureMap


def collision_beta(beta0: float, feature_dim: int, input_dim: int) -> float:
    """β = β0 · (d_f / d_in)²: the paper's β0 · 2048² / dim_b², 2048 being its feature dimension."""
    return beta0 * (feature_dim / input_dim) ** 2


def feature_collision(
    features: FeatureMap, base: Tensor, target: Tensor, beta0: float, step: float, iterations: int,
    decay: float, pixel_scale: float = 1.0,
) -> tuple[Tensor, list[float]]:
    """The paper's Algorithm 1 on a batch: poisons (N, C, H, W) in 0..1 near ``base`` whose features
    collide with ``target``'s (both (N, C, H, W) in 0..1), and the summed objective
    ||f(x) − f(t)||² + β ||s·(x − b)||² (s = ``pixel_scale``) before and after each iteration.

    Forward step x̂ = x − λ ∇_x ||f(x) − f(t)||², backward (proximal) step
    x = (x̂ + λβs² b) / (1 + λβs²), clipped to 0..1. A step that does not lower a poison's objective
    is discarded and that poison's λ multiplied by ``decay``, so the objective never increases.
    """
    target_features = features(target).detach()
    beta = collision_beta(beta0, target_features.shape[1], base[0].numel()) * pixel_scale**2
    lam = torch.full((len(base), 1, 1, 1), step, device=base.device)

    def evaluate(x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.detach().requires_grad_(True)
        collision = ((features(x) - target_features) ** 2).sum(1)
        (grad,) = torch.autograd.grad(collision.sum(), x)
        objective = collision.detach() + beta * ((x.detach() - base) ** 2).flatten(1).sum(1)
        return objective, grad

    x = base.clone()
    objective, grad = evaluate(x)
    history = [objective.sum().item()]
    for _ in range(iterations):
        candidate = ((x - lam * grad + lam * beta * base) / (1 + lam * beta)).clamp(0.0, 1.0)
        new_objective, new_grad = evaluate(candidate)
        better = (new_objective < objective).view(-1, 1, 1, 1)
        x = torch.where(better, candidate, x)
        grad = torch.where(better, new_grad, grad)
        objective = torch.where(better.flatten(), new_objective, objective)
        lam = torch.where(better, lam, lam * decay)
        history.append(objective.sum().item())
    return x.detach(), history


@DATA_ATTACKS.register("poison-frogs")
class PoisonFrogs(CollisionAttack):
    """Base images (optionally watermarked with the target) moved until their features collide with
    the target's in this round's global model (:func:`feature_collision`); labels kept."""

    class Params(CollisionParams):
        name: Literal["poison-frogs"] = "poison-frogs"
        poisons: int = Field(
            1, ge=1, le=1_000,
            description="Poisons per target instance (the paper: 1 in transfer learning, 50 end to end).",
        )
        beta0: float = Field(
            0.25, gt=0.0, description="β0 of β = β0·(d_f/d_in)², weight of the input proximity (dimensionless)."
        )
        step: float = Field(
            1.0, gt=0.0, description="Initial forward step λ, on images in 0..1 (lowered where a step fails)."
        )
        pixel_scale: float = Field(
            1.0, gt=0.0,
            description="Pixel scale s of the proximity term β||s·(x − b)||²: 1 on the model's 0..1 inputs "
            "(as ART's FeatureCollisionAttack); 255 on 0–255 pixels, a pull 65,025 times stronger.",
        )
        decay: float = Field(0.5, gt=0.0, lt=1.0, description="Factor applied to λ after a failed step.")
        iterations: int = Field(1_000, ge=1, le=100_000, description="Forward-backward iterations.")
        watermark: float = Field(
            0.0, ge=0.0, lt=1.0,
            description="Opacity γ (0–1) of the target blended into each base, b ← γ·t + (1 − γ)·b "
            "(0: none; the paper uses 0.3 end to end).",
        )

    params: Params

    @property
    def poisons_per_target(self) -> int:
        return self.params.poisons

    def collide(self, models: list[FeatureMap], bases: Tensor, targets: Tensor) -> Tensor:
        p = self.params
        targets = targets.unsqueeze(1).expand_as(bases)
        bases = p.watermark * targets + (1.0 - p.watermark) * bases
        poisons, _ = feature_collision(
            models[0], bases.flatten(0, 1), targets.flatten(0, 1), p.beta0, p.step, p.iterations, p.decay,
            p.pixel_scale,
        )
        return poisons.view_as(bases)
