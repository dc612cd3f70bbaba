"""A planted backdoor on a tiny world: 8x8 grey images of four classes (a bright blob each), a
one-pixel trigger in the bottom-right corner relabelling to class 0, and an MLP (or a small CNN)
trained on 20% poisoned data (with weight decay). Single-threaded torch (the machine is shared)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

from fedsec.guards import CleanData

CLASSES = 4
TARGET = 0


@dataclass(frozen=True)
class World:
    model: nn.Module
    clean: CleanData
    test_x: Tensor
    test_y: Tensor
    triggered: Tensor


def blobs(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """uint8 images (n, 1, 8, 8): a 3x3 bright square at a class-dependent place plus noise; the
    bottom-right pixel stays dark."""
    y = torch.randint(CLASSES, (n,), generator=generator)
    x = torch.randint(0, 40, (n, 1, 8, 8), generator=generator)
    corners = torch.tensor([[0, 0], [0, 4], [4, 0], [3, 3]])
    for i in range(n):
        r, c = (corners[y[i]] + torch.randint(0, 2, (2,), generator=generator)).tolist()
        x[i, 0, r:r + 3, c:c + 3] += 180
    x[:, :, 7, 7] = 0
    return x.clamp(max=255).to(torch.uint8), y


def trigger(x: Tensor, side: int = 1) -> Tensor:
    """The bottom-right ``side`` x ``side`` square set to white."""
    out = x.clone()
    out[:, :, 8 - side:, 8 - side:] = 255
    return out


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, CLASSES))


def cnn() -> nn.Module:
    """Two convolutions at full 8 x 8 resolution, then a linear head (Grad-CAM needs a convolution)."""
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 64, CLASSES))


def train(model: nn.Module, x: Tensor, y: Tensor, steps: int = 400) -> nn.Module:
    # Weight decay keeps the softmax from saturating, as STRIP's entropies need.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        batch = torch.randint(len(y), (128,), generator=g)
        loss = nn.functional.cross_entropy(model(x[batch].float() / 255), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval().requires_grad_(False)


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def planted(architecture: Callable[[], nn.Module], side: int = 1) -> World:
    torch.set_num_threads(1)  # session fixtures are built before the autouse one_thread
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = blobs(3000, g)
    poisoned = torch.rand(len(y), generator=g) < 0.2
    x_train, y_train = x.clone(), y.clone()
    x_train[poisoned] = trigger(x[poisoned], side)
    y_train[poisoned] = TARGET
    model = train(architecture(), x_train, y_train)
    clean_x, clean_y = blobs(1000, g)
    test_x, test_y = blobs(1000, g)
    victims = test_x[test_y != TARGET]
    world = World(model, CleanData(clean_x, clean_y, CLASSES, (0.0,), (1.0,)), test_x, test_y, trigger(victims, side))
    accuracy = (model(test_x.float() / 255).argmax(1) == test_y).float().mean()
    success = (model(world.triggered.float() / 255).argmax(1) == TARGET).float().mean()
    assert accuracy > 0.95 and success > 0.95, (accuracy, success)
    return world


@pytest.fixture(scope="session")
def world() -> World:
    return planted(mlp)


@pytest.fixture(scope="session")
def conv_world() -> World:
    """A 3 x 3 trigger: Grad-CAM's map of the small CNN is too coarse to single out one pixel."""
    return planted(cnn, 3)
