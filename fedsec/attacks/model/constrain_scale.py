"""Constrain-and-scale (Bagdasaryan et al. 2020) / PGD (Sun et al. 2019): stay inside a norm bound.

The training loop can add :func:`anomaly_evasion_loss` to the task loss and call
:func:`project_l2_ball` on the parameters after each step (PGD); the attack itself
scales the final update and projects it into the ball.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

from pydantic import Field
from torch import Tensor

from fedsec.attacks.model.base import MODEL_ATTACKS, ModelAttack, ModelAttackContext, ModelAttackParams
from fedsec.attacks.model.scaling import scale_factor


def project_l2_ball(vector: Tensor, radius: float | Tensor, center: Tensor | None = None) -> Tensor:
    """The point of the L2 ball of ``radius`` around ``center`` (default: the origin) nearest ``vector``.

    For an update Δ, leave ``center`` out; for a parameter vector w during training,
    pass the global vector so that ‖w − w_global‖₂ ≤ radius.
    """
    offset = vector if center is None else vector - center
    shrink = (radius / offset.norm().clamp_min(1e-12)).clamp(max=1.0)
    projected = offset * shrink
    return projected if center is None else center + projected


def anomaly_evasion_loss(params_vector: Tensor, global_vector: Tensor, weight: float) -> Tensor:
    """``weight`` · ‖params_vector − global_vector‖₂², a scalar to add to the task loss.

    Bagdasaryan et al.'s L = α·L_task + (1 − α)·L_ano with a distance-based anomaly
    term: adding this (weight = (1 − α)/α) keeps the trained model close to the global
    model, so that norm- or distance-based defenses do not flag it. Differentiable in
    ``params_vector`` (the flattened model parameters, e.g. ``torch.cat([p.flatten() ...])``).
    """
    return weight * (params_vector - global_vector).square().sum()


@MODEL_ATTACKS.register("constrain-scale")
class ConstrainScale(ModelAttack):
    """Δ' = project(γ·Δ) into the L2 ball of ``radius`` around the global model."""

    class Params(ModelAttackParams):
        name: Literal["constrain-scale"] = "constrain-scale"
        gamma: float | None = Field(
            None, gt=0.0, description="Scale factor γ before projection; None = n/η, clients per round / server lr."
        )
        radius: float | None = Field(
            None,
            gt=0.0,
            description="L2 bound on the update, in parameter units; None = the (lower) median L2 norm of the "
            "benign updates the attacker sees (its own when it sees none), which passes median-norm clipping.",
        )
        anomaly_weight: float = Field(
            0.0, ge=0.0, description="Weight of anomaly_evasion_loss for the training loop; 0 disables it."
        )

    params: Params

    def training_penalty(self, global_parameters: Tensor) -> Callable[[Tensor], Tensor] | None:
        """:func:`anomaly_evasion_loss` with ``anomaly_weight`` (None when it is 0)."""
        if self.params.anomaly_weight == 0:
            return None
        return partial(anomaly_evasion_loss, global_vector=global_parameters, weight=self.params.anomaly_weight)

    def radius(self, update: Tensor, ctx: ModelAttackContext) -> float | Tensor:
        """The L2 bound: ``radius`` if given, else the median norm of the benign reference updates."""
        if self.params.radius is not None:
            return self.params.radius
        return ctx.benign_reference(update).norm(dim=1).median()

    def __call__(self, update: Tensor, ctx: ModelAttackContext) -> Tensor:
        return project_l2_ball(update * scale_factor(self.params.gamma, ctx), self.radius(update, ctx))
