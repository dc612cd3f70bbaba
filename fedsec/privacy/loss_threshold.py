"""Loss-threshold membership inference (Yeom et al., CSF 2018)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from fedsec.privacy.base import PRIVACY_ATTACKS, AttackParams, MembershipInference


@PRIVACY_ATTACKS.register("loss-threshold")
class LossThreshold(MembershipInference):
    """An example is called a member when the model's cross-entropy on it is below a threshold:
    by default the mean loss on the members (Yeom et al. assume the attacker knows the average
    training loss). The score is the negated loss, so ROC figures need no threshold."""

    class Params(AttackParams):
        name: Literal["loss-threshold"] = "loss-threshold"
        threshold: float | None = Field(
            None, gt=0, description="Loss threshold in nats; none: the members' mean loss (Yeom et al.).")
        batch_size: int = Field(512, ge=1, le=65_536, description="Examples per forward pass.")

    params: Params

    @torch.no_grad()
    def scores(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        model.eval()
        losses = [
            nn.functional.cross_entropy(model(xb), yb, reduction="none")
            for xb, yb in zip(x.split(self.params.batch_size), y.split(self.params.batch_size), strict=True)
        ]
        return -torch.cat(losses)

    def threshold(self, member_scores: torch.Tensor) -> float:
        if self.params.threshold is not None:
            return -self.params.threshold
        return member_scores.mean().item()
