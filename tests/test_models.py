"""Model registry, flat-vector round trips, local training."""

from __future__ import annotations

import pytest
import torch

from fedsec.data.datasets import load_dataset
from fedsec.models import MODELS, build_model, dataset_problems
from fedsec.params import load_vector, model_vector
from fedsec.training import ClientConfig, evaluate, train_local

SHAPES = {"cnn": (1, 28, 28), "lenet5": (1, 28, 28), "resnet18": (3, 32, 32), "mlp": (1, 8, 8)}


@pytest.mark.parametrize("name", MODELS.names())
def test_models_produce_logits(name: str) -> None:
    shape = SHAPES[name]
    model = build_model(name, shape, 10, (0.5,) * shape[0], (0.25,) * shape[0])
    logits = model(torch.rand(2, *shape))
    assert logits.shape == (2, 10)


def test_resnet18_trains_on_cifar10_only() -> None:
    assert dataset_problems("resnet18", "cifar10") == [] and dataset_problems("cnn", "digits") == []
    assert dataset_problems("resnet18", "mnist") == ["resnet18 expects 32x32 colour images (data.dataset: cifar10)"]


def test_lenet5_accepts_32x32() -> None:
    assert build_model("lenet5", (3, 32, 32), 10, (0.5,) * 3, (0.2,) * 3)(torch.rand(1, 3, 32, 32)).shape == (1, 10)


def test_vector_round_trip_covers_batchnorm_statistics() -> None:
    model = build_model("resnet18", (3, 32, 32), 10, (0.5,) * 3, (0.2,) * 3)
    vector = model_vector(model)
    assert vector.numel() == sum(v.numel() for v in model.state_dict().values() if v.is_floating_point())
    load_vector(model, torch.arange(vector.numel(), dtype=torch.float32))
    assert torch.equal(model_vector(model), torch.arange(vector.numel(), dtype=torch.float32))


def test_local_training_learns_and_is_reproducible() -> None:
    data = load_dataset("synthetic")
    cfg = ClientConfig(local_epochs=2, batch_size=32, lr=0.05)

    def trained() -> torch.Tensor:
        torch.manual_seed(0)
        model = build_model("mlp", data.image_shape, 10, data.mean, data.std)
        train_local(model, data.train_x, data.train_y, cfg, torch.Generator().manual_seed(1), torch.device("cpu"))
        return model_vector(model), evaluate(model, data.test_x, data.test_y, 256, torch.device("cpu")).accuracy

    (first, accuracy), (second, _) = trained(), trained()
    assert accuracy > 0.9
    assert torch.equal(first, second)
