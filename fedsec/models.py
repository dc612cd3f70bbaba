"""Model registry: every model takes uint8-range images scaled to 0..1 and normalises them itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from fedsec.registry import Registry

ModelFactory = Callable[[tuple[int, int, int], int], nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")


@dataclass(frozen=True)
class InputRequirement:
    """The images a model is built for, in words, and the datasets that provide them."""

    images: str
    datasets: tuple[str, ...]


REQUIREMENTS: dict[str, InputRequirement] = {"resnet18": InputRequirement("32x32 colour images", ("cifar10",))}
"""Models that train on some datasets only, by registered name; the others take any image shape."""


def output_layer(model: nn.Module) -> nn.Linear:
    """The model's last linear layer: its output layer (every registered model ends in one)."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def penultimate(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, d) input of the model's output layer for the inputs ``x`` (the model's own input scale);
    differentiable unless the caller runs it under ``torch.no_grad``, in the mode the caller set."""
    captured: list[torch.Tensor] = []
    handle = output_layer(model).register_forward_pre_hook(lambda _module, inputs: captured.append(inputs[0].flatten(1)))
    try:
        model(x)
    finally:
        handle.remove()
    return captured[0]


def dataset_problems(model: str, dataset: str) -> list[str]:
    """Why the model registered as ``model`` cannot train on the dataset ``dataset`` (one line
    each); empty when it can."""
    need = REQUIREMENTS.get(model)
    if need is None or dataset in need.datasets:
        return []
    return [f"{model} expects {need.images} (data.dataset: {', '.join(need.datasets)})"]


class Normalize(nn.Module):
    """Per-channel (x - mean) / std with constants that are not part of the state dict."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def build_model(
    name: str,
    image_shape: tuple[int, int, int],
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> nn.Module:
    """The named architecture for images of ``image_shape`` (C, H, W), with input normalisation."""
    return nn.Sequential(Normalize(mean, std), MODELS.get(name)(image_shape, num_classes))


@MODELS.register("cnn")
def small_cnn(image_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Two 3x3 conv blocks (16, 32 channels) and a 128-unit hidden layer: ~207k parameters
    on 28x28 images, fast enough for 2-core federations."""
    c, h, w = image_shape
    return nn.Sequential(
        nn.Conv2d(c, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * (h // 4) * (w // 4), 128), nn.ReLU(),
        nn.Linear(128, num_classes),
    )


@MODELS.register("lenet5")
def lenet5(image_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """LeCun et al.'s LeNet-5 (padding the first conv so 28x28 inputs act like 32x32)."""
    c, h, w = image_shape
    pad = 2 if (h, w) == (28, 28) else 0

    def side(n: int) -> int:
        return ((n + 2 * pad - 4) // 2 - 4) // 2

    return nn.Sequential(
        nn.Conv2d(c, 6, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * side(h) * side(w), 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes),
    )


@MODELS.register("resnet18")
def cifar_resnet18(image_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """ResNet-18 adapted to 32x32 inputs: 3x3 stem, no initial max-pooling."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(image_shape[0], 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


@MODELS.register("mlp")
def mlp(image_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """A one-hidden-layer perceptron (64 units), sized for 8x8 digits."""
    c, h, w = image_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 64), nn.ReLU(), nn.Linear(64, num_classes))
