"""Tiny models and one thread: inversion on models this small is fastest unthreaded."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)  # tests/conftest.py restores the count


def _tiny_model(activation: type[nn.Module] = nn.Sigmoid, side: int = 8, classes: int = 5) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), activation(), nn.Flatten(),
        nn.Linear(4 * side * side, 16), activation(), nn.Linear(16, classes),
    )


TinyModel = Callable[..., nn.Module]


@pytest.fixture
def tiny_model() -> TinyModel:
    """Builds a conv layer and two linear layers on 1 x side x side images (DLG's smooth
    activation by default): ``tiny_model(activation=nn.Sigmoid, side=8, classes=5)``."""
    return _tiny_model
