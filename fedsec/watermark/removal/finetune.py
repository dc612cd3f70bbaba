"""Fine-tuning on the attacker's own labelled data."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from fedsec.training import ClientConfig, train_local
from fedsec.watermark.removal.base import (
    REMOVALS,
    Removal,
    RemovalContext,
    RemovalParams,
)
from fedsec.watermark.tensors import model_device


@REMOVALS.register("finetune")
class FineTune(Removal):
    """SGD with momentum over a seeded fraction of the training set for some epochs."""

    class Params(RemovalParams):
        name: Literal["finetune"] = "finetune"
        epochs: int = Field(5, ge=0, description="Passes over the attacker's data.")
        fraction: float = Field(0.1, gt=0, le=1, description="Share of the training set the attacker holds (0..1).")
        lr: float = Field(0.01, gt=0, description="SGD learning rate.")
        batch_size: int = Field(64, ge=1, description="Examples per step.")

    params: Params
    strength = "epochs"

    def __call__(self, model: nn.Module, context: RemovalContext) -> nn.Module:
        p = self.params
        if p.epochs == 0:
            return model
        x, y = context.attacker_data(p.fraction)
        cfg = ClientConfig(local_epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, momentum=0.9)
        train_local(model, x, y, cfg, context.generator("finetune"), model_device(model))
        return model.eval()


