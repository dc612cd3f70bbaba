"""Tiny synthetic task for the inspection tests: 8x8 grey images of six classes, each a fixed
random template plus noise; the backdoor is a 2x2 white patch in the bottom-right corner that
sends any image to class 0. Models train in about a second on one CPU thread."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

SIDE, CLASSES, TARGET = 8, 6, 0
PATCH = (slice(6, 8), slice(6, 8))


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)  # tests/conftest.py restores the count


def images(count: int, seed: int) -> tuple[Tensor, Tensor]:
    """``count`` uint8 images (count, 1, 8, 8) and their labels."""
    templates = torch.rand(CLASSES, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(1234)) > 0.5
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(CLASSES, (count,), generator=g)
    x = templates[y].float() * 150 + 40 + 30 * torch.randn(count, 1, SIDE, SIDE, generator=g)
    x[:, :, PATCH[0], PATCH[1]] = x[:, :, PATCH[0], PATCH[1]].clamp(max=200)  # the patch is never natural
    return x.round().clamp(0, 255).to(torch.uint8), y


def stamp(x: Tensor) -> Tensor:
    """The backdoor trigger on uint8 images."""
    out = x.clone()
    out[:, :, PATCH[0], PATCH[1]] = 255
    return out


def tiny_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * SIDE * SIDE, CLASSES),
    )


def train(model: nn.Module, x: Tensor, y: Tensor, steps: int, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        batch = torch.randint(len(y), (64,), generator=g)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[batch].float() / 255), y[batch]).backward()
        optimizer.step()
    optimizer.zero_grad()
    return model.eval()


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return (model(x.float() / 255).argmax(1) == y).float().mean().item()


def attack_success(model: nn.Module, x: Tensor, y: Tensor) -> float:
    keep = y != TARGET
    with torch.no_grad():
        return (model(stamp(x[keep]).float() / 255).argmax(1) == TARGET).float().mean().item()


@dataclass(frozen=True)
class Task:
    clean: nn.Module
    backdoored: nn.Module
    x: Tensor
    """Clean images the server holds."""
    y: Tensor
    test_x: Tensor
    test_y: Tensor


@pytest.fixture(scope="session")
def task() -> Task:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x, y = images(1200, seed=0)
    poisoned = torch.rand(len(y), generator=torch.Generator().manual_seed(1)) < 0.2
    px, py = x.clone(), y.clone()
    px[poisoned], py[poisoned] = stamp(x[poisoned]), TARGET
    clean = train(tiny_cnn(0), x, y, 300, seed=2)
    backdoored = train(tiny_cnn(0), px, py, 300, seed=2)
    sx, sy = images(160, seed=3)
    tx, ty = images(600, seed=4)
    torch.set_num_threads(threads)
    return Task(clean, backdoored, sx, sy, tx, ty)
