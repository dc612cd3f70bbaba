"""Model extraction by distillation: a fresh model trained on the suspect model's soft outputs."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from fedsec.watermark.removal.base import (
    REMOVALS,
    Removal,
    RemovalContext,
    RemovalParams,
)
from fedsec.watermark.tensors import as_input, model_device


@REMOVALS.register("distill")
class Distill(Removal):
    """The attacker queries the model on its own unlabelled images and trains a freshly initialised
    model of the same architecture to match the softened outputs (KL divergence at temperature T)."""

    class Params(RemovalParams):
        name: Literal["distill"] = "distill"
        epochs: int = Field(5, ge=1, description="Passes over the attacker's images.")
        fraction: float = Field(0.1, gt=0, le=1, description="Share of the training set queried (0..1).")
        temperature: float = Field(
            2.0, gt=0, description="Softmax temperature T of teacher and student (dimensionless).")
        lr: float = Field(0.05, gt=0, description="SGD learning rate of the student.")
        batch_size: int = Field(64, ge=1, description="Images per step.")

    params: Params
    strength = "epochs"

    def __call__(self, model: nn.Module, context: RemovalContext) -> nn.Module:
        p = self.params
        device = model_device(model)
        x, _ = context.attacker_data(p.fraction)
        model.eval()
        with torch.no_grad():
            teacher = torch.cat([model(as_input(b, device)) for b in x.split(1000)]).div_(p.temperature).softmax(1)
        student = context.build().to(device).train()
        optimizer = torch.optim.SGD(student.parameters(), lr=p.lr, momentum=0.9)
        generator = context.generator("distill")
        for _ in range(p.epochs):
            for batch in torch.randperm(len(x), generator=generator).split(p.batch_size):
                log_probs = (student(as_input(x[batch], device)) / p.temperature).log_softmax(1)
                loss = nn.functional.kl_div(log_probs, teacher[batch.to(device)], reduction="batchmean")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return student.eval()
