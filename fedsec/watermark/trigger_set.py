"""What black-box (trigger-set) schemes share: embedding on trigger batches, verification by labels."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fedsec.watermark.base import Secrets, Watermark
from fedsec.watermark.tensors import as_input, model_device


@torch.no_grad()
def predicted_labels(model: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    """Top-1 labels of ``model`` on uint8 images ``x`` (evaluation mode), on the model's device."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    labels = torch.cat([model(as_input(b, device)).argmax(1) for b in x.split(batch_size)])
    model.train(was_training)
    return labels


class TriggerSetWatermark(Watermark):
    """A scheme whose secrets are trigger images ``x`` with secret labels ``y``, learnt by fine-tuning.

    Verification uses ``verify_x``/``verify_y`` when the secrets have them (fresh triggers),
    else the embedding triggers; a model without the watermark matches a label with probability 1/C.
    """

    statistic = "match"

    def loss(self, model: nn.Module, secrets: Secrets, generator: torch.Generator, batch_size: int) -> Tensor:
        x, y = secrets["x"], secrets["y"]
        pick = torch.randperm(len(y), generator=generator)[:batch_size]
        device = model_device(model)
        return nn.functional.cross_entropy(model(as_input(x[pick], device)), y[pick].to(device))

    def answers(self, model: nn.Module, secrets: Secrets) -> tuple[Tensor, float]:
        x, y = secrets.get("verify_x", secrets["x"]), secrets.get("verify_y", secrets["y"])
        return predicted_labels(model, x) == y.to(model_device(model)), 1.0 / self.num_classes
