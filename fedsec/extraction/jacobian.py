"""Jacobian-based dataset augmentation (Papernot et al., AsiaCCS 2017): from a small seed set,
each substitute round trains the copy, then adds x + λ·sign(∇x F[O(x)]) for every image x of the
set (F: the copy's logits, O(x): the victim's class) and queries the victim on the new images."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from fedsec.extraction.base import (
    EXTRACTIONS,
    MAX_QUERIES,
    Extraction,
    ExtractionParams,
    Oracle,
    query_random,
    train_substitute,
)

MAX_SUBSTITUTE_ROUNDS = 30


def jacobian_step(model: nn.Module, x: Tensor, classes: Tensor, step: float, batch_size: int = 1000) -> Tensor:
    """x + step·sign(∂F_c(x)/∂x) for each image x and its class c (F: ``model``'s logits),
    clipped to the image range 0..1."""
    moved = []
    for xb, cb in zip(x.split(batch_size), classes.split(batch_size), strict=True):
        xb = xb.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(xb).gather(1, cb[:, None]).sum(), xb)
        moved.append((xb + step * grad.sign()).clamp_(0, 1).detach())
    return torch.cat(moved)


@EXTRACTIONS.register("jacobian")
class Jacobian(Extraction):
    """Papernot et al.'s substitute training. When an augmentation would take the thief past its
    budget, a seeded random subset of the new images that fits is queried; the copy trains once
    more on the whole set and the rounds stop (the paper's reservoir sampling is not implemented)."""

    class Params(ExtractionParams):
        name: Literal["jacobian"] = "jacobian"
        seed_samples: int = Field(
            150, ge=1, le=MAX_QUERIES, description="Images of the initial set, drawn from the thief's data "
            "(the paper: 150).")
        rounds: int = Field(
            6, ge=1, le=MAX_SUBSTITUTE_ROUNDS, description=f"Substitute rounds ρ (at most {MAX_SUBSTITUTE_ROUNDS}); "
            "each but the last doubles the set (the paper: 6).")
        step: float = Field(0.1, gt=0, le=1, description="Augmentation step λ, in pixel units of the 0..1 range.")
        period: int | None = Field(
            None, ge=1, le=MAX_SUBSTITUTE_ROUNDS, description="τ of the periodic step size λ·(-1)^⌊ρ/τ⌋ "
            "(the paper's section 6); none: λ keeps its sign.")

    params: Params

    def steal(self, oracle: Oracle, pool: Tensor, substitute: nn.Module, generator: torch.Generator) -> nn.Module:
        p = self.params
        _, x, answers = query_random(oracle, pool, p.seed_samples, generator)
        for rho in range(p.rounds):
            train_substitute(substitute, x, answers, p, generator)
            if rho == p.rounds - 1 or oracle.remaining == 0:
                break
            sign = -1 if p.period is not None and (rho // p.period) % 2 else 1
            new = jacobian_step(substitute, x, answers.argmax(1), sign * p.step)
            if len(new) > oracle.remaining:
                new = new[torch.randperm(len(new), generator=generator)[: oracle.remaining].to(new.device)]
            x, answers = torch.cat([x, new]), torch.cat([answers, oracle(new)])
        return substitute.eval()
