"""Federated fine-tuning: a model pre-trained centrally on a held-out part of the training set
(never in any client's partition, never the test set), then fine-tuned by the federation, either
its last layer only (the rest frozen at the clients) or the whole model.

The pre-trained weights are cached on disk, keyed by every input, so repeated runs train it once.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from fedsec.data.datasets import MAX_EXAMPLES, ImageDataset
from fedsec.models import build_model, output_layer
from fedsec.training import MAX_EPOCHS, ClientConfig, train_local


class PretrainingConfig(BaseModel):
    """The scenario's ``pretraining`` section. Unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)

    samples: int = Field(
        10_000, ge=1, le=MAX_EXAMPLES, description="Training examples held out for pre-training (drawn with "
        "the seed, removed from every client partition; at most the training set).")
    epochs: int = Field(3, ge=1, le=MAX_EPOCHS, description=f"Epochs of central pre-training (at most {MAX_EPOCHS:,}).")
    batch_size: int = Field(64, ge=1, le=65_536, description="Examples per SGD step of pre-training.")
    lr: float = Field(0.05, gt=0, description="SGD learning rate of pre-training (momentum 0.9).")
    fine_tune: Literal["last-layer", "whole-model"] = Field(
        "last-layer", description="What the clients train: the last layer only (every other parameter frozen) "
        "or the whole model.")


def held_out_indices(num_train: int, samples: int, seed: int) -> np.ndarray:
    """Sorted indices of the ``samples`` training examples reserved for pre-training."""
    return np.sort(np.random.default_rng([seed, 0x5EED]).permutation(num_train)[:samples])


def freeze_for_fine_tuning(model: nn.Module, fine_tune: str) -> None:
    """Leave only the last layer trainable (``last-layer``), or every parameter (``whole-model``)."""
    head = set(map(id, output_layer(model).parameters()))
    for parameter in model.parameters():
        parameter.requires_grad_(fine_tune == "whole-model" or id(parameter) in head)


def _cache_path(key: dict) -> Path:
    root = Path(os.environ.get("FEDSEC_CACHE", Path.home() / ".cache" / "fedsec")) / "pretrained"
    return root / f"{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]}.pt"


def pretrained_state(config: PretrainingConfig, model_name: str, dataset: ImageDataset, seed: int,
                     device: torch.device) -> dict[str, torch.Tensor]:
    """The state dict of ``model_name`` pre-trained on the held-out examples (from the disk cache when
    an identical pre-training already ran, whatever the fine-tuning after it); initialisation and
    batch order come from ``seed``."""
    held = held_out_indices(len(dataset.train_y), config.samples, seed)
    key = {"model": model_name, "dataset": dataset.name, "seed": seed, "config": config.model_dump(exclude={"fine_tune"}),
           "labels": hashlib.sha256(dataset.train_y[torch.from_numpy(held)].numpy()).hexdigest()}
    path = _cache_path(key)
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=True)
    torch.manual_seed(seed)
    model = build_model(model_name, dataset.image_shape, dataset.num_classes, dataset.mean, dataset.std).to(device)
    index = torch.from_numpy(held)
    train_local(model, dataset.train_x[index], dataset.train_y[index],
                ClientConfig(local_epochs=config.epochs, batch_size=config.batch_size, lr=config.lr),
                torch.Generator().manual_seed(seed), device)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".pt", delete=False) as tmp:
        tmp.write(buffer.getvalue())
    os.replace(tmp.name, path)
    return state
