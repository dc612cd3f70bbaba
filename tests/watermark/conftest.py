"""Small fixtures: digits, a briefly trained model, single-threaded torch (the machine is shared)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedsec.data.datasets import ImageDataset, load_dataset
from fedsec.models import build_model
from fedsec.scenario import Scenario, parse_scenario
from fedsec.training import ClientConfig, train_local


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits() -> ImageDataset:
    return load_dataset("digits")


def _scenario_with(scheme: dict, **watermark: object) -> Scenario:
    return parse_scenario({
        "name": "wm-test", "rounds": 2, "data": {"dataset": "digits", "num_clients": 4},
        "model": {"name": "cnn"},
        "watermark": {"scheme": scheme, "key": "seeded", "owner_samples": 300,
                      "embedding": {"max_steps": 400, "lr": 0.05}, **watermark},
    })


@pytest.fixture
def scenario_with():
    """Builds a digits scenario with the given watermark scheme (seeded key unless told)."""
    return _scenario_with


def trained_model(dataset: ImageDataset, seed: int, epochs: int = 3) -> torch.nn.Module:
    """A never-watermarked cnn trained on digits from its own seed."""
    torch.manual_seed(seed)
    model = build_model("cnn", dataset.image_shape, dataset.num_classes, dataset.mean, dataset.std)
    cfg = ClientConfig(local_epochs=epochs, batch_size=32, lr=0.05)
    train_local(model, dataset.train_x, dataset.train_y, cfg, torch.Generator().manual_seed(seed), torch.device("cpu"))
    return model.eval()


@pytest.fixture(scope="session")
def clean_models(digits: ImageDataset) -> list[torch.nn.Module]:
    """Five independently trained, never-watermarked models."""
    return [trained_model(digits, seed) for seed in range(5)]


@pytest.fixture
def owner_dir(tmp_path: Path) -> Path:
    return tmp_path / "run" / "owner"
