"""Neurotoxin (Zhang et al. 2022): hide the backdoor in coordinates benign clients rarely change."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from fedsec.attacks.model.base import MODEL_ATTACKS, ModelAttack, ModelAttackContext, ModelAttackParams


@MODEL_ATTACKS.register("neurotoxin")
class Neurotoxin(ModelAttack):
    """Keeps the update only outside the top ``top_fraction`` coordinates of a benign reference.

    The training loop builds the mask once per round with :meth:`gradient_mask` (from the
    benign update it expects, e.g. the mean of the attacker's benign updates or the last
    global update) and multiplies every gradient by it; the attack itself then projects
    the final update on the mask built from the mean of ``ctx.benign_updates`` (the
    client's own update when there are none), see :meth:`project`.
    """

    class Params(ModelAttackParams):
        name: Literal["neurotoxin"] = "neurotoxin"
        top_fraction: float = Field(
            0.05,
            ge=0.0,
            le=1.0,
            description="Fraction (0–1) of coordinates, the largest in benign magnitude, left untouched "
            "(1–10 % in the paper).",
        )

    params: Params

    def gradient_mask(self, benign_reference: Tensor) -> Tensor:
        """Bool ``(d,)``: False on the round(top_fraction·d) largest ``|benign_reference|`` coordinates."""
        count = round(self.params.top_fraction * benign_reference.numel())
        mask = torch.ones_like(benign_reference, dtype=torch.bool)
        mask[benign_reference.abs().topk(count).indices] = False
        return mask

    @staticmethod
    def project(update: Tensor, mask: Tensor) -> Tensor:
        """``update`` with the coordinates outside ``mask`` set to zero (a new tensor)."""
        return update.masked_fill(~mask, 0)

    def __call__(self, update: Tensor, ctx: ModelAttackContext) -> Tensor:
        return self.project(update, self.gradient_mask(ctx.benign_reference(update).mean(dim=0)))
