"""Inverting Gradients (Geiping et al., NeurIPS 2020): cosine similarity plus total variation."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from fedsec.privacy.base import (
    PRIVACY_ATTACKS,
    AttackParams,
    GradientInversion,
    ObservedUpdate,
    Reconstruction,
)
from fedsec.privacy.gradients import (
    LOCAL_STEPS_HELP,
    LocalSteps,
    recover_labels,
    replayed_training,
    simulate_update,
    total_variation,
)


def cosine_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """1 − cos(a, b) of two parameter lists taken as one vector each (equal layer weights)."""
    dot = sum((x * y).sum() for x, y in zip(a, b, strict=True))
    norm_a = torch.sqrt(sum(x.pow(2).sum() for x in a))
    norm_b = torch.sqrt(sum(y.pow(2).sum() for y in b))
    return 1 - dot / (norm_a * norm_b)


@PRIVACY_ATTACKS.register("inverting-gradients")
class InvertingGradients(GradientInversion):
    """Images from a standard normal start, optimised by Adam on the sign of their gradient, kept
    in 0..1 after every step, to minimise 1 − cos(simulated update, observed update) plus
    ``tv_weight`` times their total variation; the learning rate drops tenfold at 3/8, 5/8 and
    7/8 of the iterations; the restart of lowest loss wins (the reference code's defaults)."""

    class Params(AttackParams):
        name: Literal["inverting-gradients"] = "inverting-gradients"
        iterations: int = Field(
            4800, ge=1, le=1_000_000, description="Adam steps per restart (the reference's 4800 for CIFAR-10).")
        lr: float = Field(0.1, gt=0, description="Adam learning rate, in pixel units (images are 0..1).")
        tv_weight: float = Field(
            1e-4, ge=0, description="Weight of total variation, on 0..1 pixels (the reference's 1e-4 on "
            "normalised pixels for single images).")
        restarts: int = Field(1, ge=1, le=100, description="Independent random starts (count); the lowest loss wins.")
        signed: bool = Field(True, description="Adam on the sign of the image gradient (the reference's signed).")
        labels: Literal["idlg", "joint"] = Field(
            "idlg", description="idlg: labels from the last layer's update, fixed; joint: soft labels "
            "optimised with the images.")
        local_steps: LocalSteps = Field("simulate", description=LOCAL_STEPS_HELP)

    params: Params

    def reconstruct(self, observed: ObservedUpdate, generator: torch.Generator) -> Reconstruction:
        trials = [self._trial(observed, generator) for _ in range(self.params.restarts)]
        return min(trials, key=lambda trial: trial.loss)

    def _trial(self, observed: ObservedUpdate, generator: torch.Generator) -> Reconstruction:
        p = self.params
        device = observed.update.device
        n, k = observed.num_images, observed.num_classes
        training = replayed_training(observed, p.local_steps)
        target = list(observed.parameter_updates().values())
        x = torch.randn((n, *observed.image_shape), generator=generator).to(device).requires_grad_(True)
        soft = torch.randn((n, k), generator=generator).to(device).requires_grad_(True)
        fixed = recover_labels(observed) if p.labels == "idlg" else None
        optimizer = torch.optim.Adam([x] if fixed is not None else [x, soft], lr=p.lr)
        milestones = [int(p.iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)]
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
        observed.model.train()
        loss = torch.tensor(float("nan"))
        for _ in range(p.iterations):
            optimizer.zero_grad()
            labels = fixed if fixed is not None else soft.softmax(dim=1)
            update = simulate_update(observed.model, x, labels, training)
            loss = cosine_distance(update, target) + p.tv_weight * total_variation(x)
            loss.backward()
            if p.signed:
                x.grad.sign_()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                x.clamp_(0, 1)
        labels = fixed if fixed is not None else soft.detach().argmax(dim=1)
        return Reconstruction(x.detach(), labels, loss.item())
