"""The owner's embedding step: fine-tune on its clean set plus the scheme's watermark term until
the secret answers reach the target share or the step budget ends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from fedsec.watermark.settings import EmbeddingConfig
from fedsec.watermark.tensors import Secrets, as_input, model_device


class Embeddable(Protocol):
    """A scheme embedded by fine-tuning: its loss term and the share of its secret answers matched."""

    def loss(self, model: nn.Module, secrets: Secrets, generator: torch.Generator, batch_size: int) -> Tensor: ...

    def score(self, model: nn.Module, secrets: Secrets) -> float: ...


@dataclass(frozen=True)
class EmbedResult:
    """SGD steps taken and the share of secret answers matched at the end (0..1)."""

    steps: int
    score: float


def fine_tune(
    model: nn.Module, scheme: Embeddable, secrets: Secrets, clean_x: Tensor, clean_y: Tensor,
    settings: EmbeddingConfig, generator: torch.Generator,
) -> EmbedResult:
    """Embed ``secrets`` into ``model`` in place.

    Each step minimises cross-entropy on ``settings.batch_size`` clean images (uint8 ``clean_x``,
    labels ``clean_y``) plus ``scheme.loss``; batches come from ``generator`` only, so the step is
    reproducible. The target is checked every ``settings.check_every`` steps and at the end.
    """
    device = model_device(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
    clean_x, clean_y = clean_x.to(device), clean_y.to(device)
    steps = 0
    while steps < settings.max_steps:
        if steps % settings.check_every == 0 and scheme.score(model, secrets) >= settings.target:
            break
        model.train()
        pick = torch.randint(0, len(clean_y), (settings.batch_size,), generator=generator).to(device)
        loss = nn.functional.cross_entropy(model(as_input(clean_x[pick], device)), clean_y[pick])
        loss = loss + scheme.loss(model, secrets, generator, settings.trigger_batch_size)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
    return EmbedResult(steps, scheme.score(model, secrets))
