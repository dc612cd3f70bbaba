"""A small victim on digits: trained on the first half of the training images; the thief holds the
other half, unlabelled; single-threaded torch (the machine is shared)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from fedsec.data.datasets import ImageDataset, load_dataset
from fedsec.models import build_model
from fedsec.training import ClientConfig, to_input, train_local

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@dataclass(frozen=True)
class Victim:
    """The victim, the thief's float images and the scoring set (float images, labels)."""

    model: nn.Module
    dataset: ImageDataset
    pool: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def fresh(self, seed: int = 1) -> nn.Module:
        """A freshly initialised copy of the victim's architecture."""
        torch.manual_seed(seed)
        d = self.dataset
        return build_model("cnn", d.image_shape, d.num_classes, d.mean, d.std)


@pytest.fixture(scope="session")
def victim() -> Victim:
    d = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("cnn", d.image_shape, d.num_classes, d.mean, d.std)
    train_local(model, d.train_x[:700], d.train_y[:700], ClientConfig(local_epochs=5, lr=0.05),
                torch.Generator().manual_seed(0), CPU)
    return Victim(model.eval(), d, to_input(d.train_x[700:], CPU), to_input(d.test_x, CPU), d.test_y)
