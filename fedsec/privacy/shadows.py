"""Shadow models: the target's architecture trained by the attacker on data it holds, as the
clients train, to see how a model behaves on examples it did and did not train on."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from pydantic import Field
from torch import nn

from fedsec.privacy.base import AttackerData, AttackParams
from fedsec.training import predict, train_local

PREDICT_BATCH = 1024
"""Examples per forward pass when shadow models are queried."""


class ShadowParams(AttackParams):
    """The parameters every shadow-model attack shares."""

    shadow_models: int = Field(4, ge=2, le=256, description="Shadow models trained, each on half the data (count).")
    epochs: int = Field(
        10, ge=1, le=1_000, description="Passes of a shadow model over its training half (epochs), with the "
        "clients' optimizer, learning rate, momentum, weight decay and batch size.")
    pool_size: int = Field(
        4_000, ge=2, le=1_000_000, description="Most of the attacker's own examples the shadow models draw on (examples).")


def half_memberships(models: int, examples: int, generator: torch.Generator) -> torch.Tensor:
    """(models, examples) bool: each example in the training set of exactly ``models // 2``
    random models (Carlini et al.'s reference code)."""
    order = torch.rand((models, examples), generator=generator).argsort(dim=0)
    return order < models // 2


def pool_sample(data: AttackerData, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random ``size`` of the attacker's own examples (all of them when it has fewer)."""
    index = torch.randperm(len(data.pool_y), generator=generator)[:size]
    return data.pool_x[index], data.pool_y[index]


def train_shadows(
    data: AttackerData, x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor, epochs: int,
    generator: torch.Generator,
) -> Iterator[nn.Module]:
    """Shadow model k trained from a fresh initialisation on the examples of ``x`` (uint8) where
    ``keep[k]``, for ``epochs`` passes of the clients' training; yielded one at a time."""
    config = data.training.model_copy(update={"local_epochs": epochs})
    for row in keep:
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        model = data.build_model().to(data.device)
        train_local(model, x[row], y[row], config, generator, data.device)
        yield model


def shadow_logits(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Logits of ``model`` on uint8 images ``x``, on the CPU."""
    return predict(model, x, PREDICT_BATCH, device).cpu()
