"""Deep Leakage from Gradients (Zhu et al., NeurIPS 2019) with iDLG's labels (Zhao et al. 2020)."""

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
)


@PRIVACY_ATTACKS.register("dlg")
class DeepLeakage(GradientInversion):
    """Dummy images (and labels) optimised by L-BFGS until the update they produce matches the
    observed one in squared Euclidean distance (both divided by the learning rate, so the
    distance is between gradients, as in the paper)."""

    class Params(AttackParams):
        name: Literal["dlg"] = "dlg"
        iterations: int = Field(300, ge=1, le=100_000, description="L-BFGS steps (the paper's 300).")
        evaluations: int = Field(
            20, ge=1, le=1_000, description="Most loss evaluations per L-BFGS step (torch's max_iter).")
        lr: float = Field(1.0, gt=0, description="L-BFGS step size (the paper's 1).")
        labels: Literal["idlg", "joint"] = Field(
            "idlg", description="idlg: labels from the last layer's update, fixed; joint: soft labels "
            "optimised with the images (the original DLG).")
        local_steps: LocalSteps = Field("simulate", description=LOCAL_STEPS_HELP)

    params: Params

    def reconstruct(self, observed: ObservedUpdate, generator: torch.Generator) -> Reconstruction:
        p = self.params
        device = observed.update.device
        n, shape, k = observed.num_images, observed.image_shape, observed.num_classes
        training = replayed_training(observed, p.local_steps)
        target = [u / observed.training.lr for u in observed.parameter_updates().values()]
        x = torch.rand((n, *shape), generator=generator).to(device).requires_grad_(True)
        soft = torch.randn((n, k), generator=generator).to(device).requires_grad_(True)
        fixed = recover_labels(observed) if p.labels == "idlg" else None
        variables = [x] if fixed is not None else [x, soft]
        optimizer = torch.optim.LBFGS(variables, lr=p.lr, max_iter=p.evaluations)
        observed.model.train()

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            labels = fixed if fixed is not None else soft.softmax(dim=1)
            update = simulate_update(observed.model, x, labels, training)
            loss = sum(((u / observed.training.lr - t) ** 2).sum() for u, t in zip(update, target, strict=True))
            loss.backward()
            return loss

        last = float("nan")
        for _ in range(p.iterations):
            previous = x.detach().clone()
            loss = optimizer.step(closure)
            if not (torch.isfinite(loss) and torch.isfinite(x).all()):
                x.data.copy_(previous)  # L-BFGS diverged: keep the images of the last finite step
                break
            last = loss.item()
        labels = fixed if fixed is not None else soft.detach().argmax(dim=1)
        return Reconstruction(x.detach().clamp(0, 1), labels, last)
