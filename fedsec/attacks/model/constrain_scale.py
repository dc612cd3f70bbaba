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

from fedsec.attacks.model.base import MODEL_ATTACKS, ModelAttack, ModelAttackContext
from fedsec.attacks.model.scaling import ReplacementParams


def project_l2_ball(vector: Tensor, radius: float | Tensor, center: Tensor | None = None) -> Tensor:
    """The point of the L2 ball of ``radius`` around ``center`` (default: the origin) nearest ``vector``.

    For an update Δ, leave ``center`` out; for a parameter vector w during training,
    pass the global vector so that ‖w − w_global‖₂ ≤ radius.
    """
    offset = vector if center is None else vector - center
    shrink = (radius / offset.norm().clamp_min(1e-12)).clamp(max=1.0)
    projected = offset * shrink
    return projected if center is None else center + projected


def anomaly_evasion_loss(params_vector: Tensor, global_vector: Tensor, alpha: float) -> Tensor:
    """((1 − α)/α) · ‖params_vector − global_vector‖₂, a scalar to add to the task loss.

    Bagdasaryan et al.'s L = α·L_class + (1 − α)·L_ano with L_ano the L2 distance to the
    global model (``model_dist_norm_var`` in the authors' code), divided by α because the
    training loop adds the term to the unweighted task loss: the same minimiser, with steps
    1/α times larger (an ``attack.lr`` of α × the paper's matches them). Differentiable in
    ``params_vector`` (the flattened model parameters, e.g. ``torch.cat([p.flatten() ...])``).
    """
    return (1.0 - alpha) / alpha * (params_vector - global_vector).norm()


@MODEL_ATTACKS.register("constrain-scale")
class ConstrainScale(ModelAttack):
    """Train with the anomaly term, then Δ' = project(γ·Δ) into the L2 ball of ``radius``.

    Bagdasaryan et al. (AISTATS 2020, Section 4) train on L = α·L_class + (1 − α)·L_ano
    (:func:`anomaly_evasion_loss`) and scale the update as far as the anomaly detector allows;
    the projection scales it to the bound. The paper leaves α a hyperparameter (its released
    configurations set ``alpha_loss: 1``, the term off); the default 0.5 weighs both terms
    equally. ``alpha: 1.0`` is the scale-only variant (no anomaly term, as in PGD-style
    norm-bounded attacks, Sun et al. 2019).
    """

    class Params(ReplacementParams):
        name: Literal["constrain-scale"] = "constrain-scale"
        radius: float | None = Field(
            None,
            gt=0.0,
            description="L2 bound on the update, in parameter units; None = the (lower) median L2 norm of the "
            "benign updates the attacker sees (its own when it sees none), which passes median-norm clipping.",
        )
        alpha: float = Field(
            0.5, gt=0.0, le=1.0,
            description="α of Bagdasaryan et al.'s L = α·L_class + (1 − α)·L_ano (L_ano: L2 distance to the "
            "global model), dimensionless; 1.0 = scale-only, no anomaly term.",
        )

    params: Params

    def uses_benign_updates(self) -> bool:
        """True when ``radius`` is left to the benign updates' median norm."""
        return self.params.radius is None

    def training_penalty(self, global_parameters: Tensor) -> Callable[[Tensor], Tensor] | None:
        """:func:`anomaly_evasion_loss` with ``alpha`` (None for the scale-only ``alpha: 1.0``)."""
        if self.params.alpha == 1.0:
            return None
        return partial(anomaly_evasion_loss, global_vector=global_parameters, alpha=self.params.alpha)

    def radius(self, update: Tensor, ctx: ModelAttackContext) -> float | Tensor:
        """The L2 bound: ``radius`` if given, else the median norm of the benign reference updates."""
        if self.params.radius is not None:
            return self.params.radius
        return ctx.benign_reference(update).norm(dim=1).median()

    def __call__(self, update: Tensor, ctx: ModelAttackContext) -> Tensor:
        return project_l2_ball(update * self.params.scale_factor(ctx), self.radius(update, ctx))
