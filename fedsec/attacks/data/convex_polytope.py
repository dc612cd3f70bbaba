"""Convex Polytope (Zhu et al., ICML 2019): poisons whose features enclose the target's, on an
ensemble of surrogate models (here the global models the client received)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from fedsec.attacks.data.base import DATA_ATTACKS
from fedsec.attacks.data.collision import CollisionAttack, CollisionParams, FeatureMap, project_linf


def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of each row (last dimension) of ``v`` onto the probability simplex."""
    u = v.sort(-1, descending=True).values
    excess = u.cumsum(-1) - 1.0
    k = torch.arange(1, v.shape[-1] + 1, device=v.device, dtype=v.dtype)
    last = (((u - excess / k) > 0).sum(-1, keepdim=True) - 1).clamp_min(0)  # ≥ 0 even when rounding loses it
    theta = excess.gather(-1, last) / (last + 1).to(v.dtype)
    return (v - theta).clamp_min(0.0)


def polytope_loss(poison_features: Tensor, target_features: Tensor, coefficients: Tensor) -> Tensor:
    """½ ||φ(t) − Σ_j c_j φ(x_j)||² / ||φ(t)||² per target, (T,), for poison features (T, K, d),
    target features (T, d) and coefficients (T, K)."""
    combined = (coefficients.unsqueeze(-1) * poison_features).sum(1)
    return 0.5 * ((target_features - combined) ** 2).sum(1) / (target_features**2).sum(1).clamp_min(1e-12)


def polytope_collision(
    models: list[FeatureMap], bases: Tensor, targets: Tensor, epsilon: float, lr: float, iterations: int,
    learn_coefficients: bool,
) -> tuple[Tensor, list[float]]:
    """Poisons (T, K, C, H, W) within L∞ ``epsilon`` of ``bases`` whose features, combined convexly,
    reach the features of ``targets`` (T, C, H, W) in every model; and the loss (mean over models,
    summed over targets) before each Adam step.

    ``learn_coefficients``: the convex coefficients of each target and model follow a projected
    gradient step (step 1/L) after each Adam step on the images (Convex Polytope); otherwise they
    stay at 1/K, the poisons' features centred on the target (Bullseye Polytope).
    """
    t, k = bases.shape[:2]
    target_features = [f(targets).detach() for f in models]
    coefficients = [torch.full((t, k), 1.0 / k, device=bases.device) for _ in models]
    poisons = bases.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([poisons], lr=lr)
    history = []
    for _ in range(iterations):
        features = [f(poisons.flatten(0, 1)).view(t, k, -1) for f in models]
        loss = sum(polytope_loss(phi, phi_t, c).sum()
                   for phi, phi_t, c in zip(features, target_features, coefficients, strict=True)) / len(models)
        history.append(loss.item())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            poisons.copy_(project_linf(poisons, bases, epsilon))
            if learn_coefficients:
                coefficients = [_coefficient_step(phi.detach(), phi_t, c)
                                for phi, phi_t, c in zip(features, target_features, coefficients, strict=True)]
    return poisons.detach(), history


def _coefficient_step(poison_features: Tensor, target_features: Tensor, coefficients: Tensor) -> Tensor:
    """One projected gradient step of :func:`polytope_loss` in the coefficients, step 1/L with L the
    largest eigenvalue of Φ Φᵀ / ||φ(t)||² (the loss's Lipschitz constant in c)."""
    scale = (target_features**2).sum(1, keepdim=True).clamp_min(1e-12)
    gram = poison_features @ poison_features.transpose(1, 2)
    residual = (coefficients.unsqueeze(-1) * poison_features).sum(1) - target_features
    gradient = (poison_features @ residual.unsqueeze(-1)).squeeze(-1) / scale
    lipschitz = torch.linalg.eigvalsh(gram)[:, -1:] / scale
    return project_simplex(coefficients - gradient / lipschitz.clamp_min(1e-12))


class PolytopeParams(CollisionParams):
    """Parameters of the polytope attacks (the papers' defaults)."""

    poisons: int = Field(5, ge=1, le=1_000, description="Poisons per target instance (K).")
    epsilon: float = Field(
        0.1, gt=0.0, le=1.0, description="L∞ budget of each poison's perturbation, on images in 0..1."
    )
    lr: float = Field(0.04, gt=0.0, description="Adam learning rate on the poison images (0..1 scale).")
    iterations: int = Field(4_000, ge=1, le=100_000, description="Adam steps.")
    surrogates: int = Field(
        1, ge=1, le=100,
        description="Global models in the ensemble: this round's and the latest earlier ones this client "
        "received (fewer while it has not seen that many).",
    )


@DATA_ATTACKS.register("convex-polytope")
class ConvexPolytope(CollisionAttack):
    """K poisons per target, within L∞ ε of their bases, whose features combined convexly reach the
    target's in every surrogate (:func:`polytope_collision`, coefficients learned); labels kept."""

    learn_coefficients = True

    class Params(PolytopeParams):
        name: Literal["convex-polytope"] = "convex-polytope"

    params: PolytopeParams

    @property
    def poisons_per_target(self) -> int:
        return self.params.poisons

    def surrogate_models(self) -> int:
        return self.params.surrogates

    def collide(self, models: list[FeatureMap], bases: Tensor, targets: Tensor) -> Tensor:
        p = self.params
        poisons, _ = polytope_collision(models, bases, targets, p.epsilon, p.lr, p.iterations, self.learn_coefficients)
        return poisons
