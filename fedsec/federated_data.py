"""A dataset plus its split among clients: what both the server and each client derive
from the scenario's ``data`` section, identically, once per process."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from fedsec.data.datasets import ImageDataset, load_dataset
from fedsec.data.partition import cached_partitions, label_histogram
from fedsec.pretraining import held_out_indices
from fedsec.scenario import DataConfig


@dataclass(frozen=True)
class FederatedData:
    """The dataset and the training indices of each client."""

    dataset: ImageDataset
    partitions: tuple[np.ndarray, ...]

    def client(self, partition: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The uint8 images and labels of one client's partition."""
        index = torch.from_numpy(self.partitions[partition])
        return self.dataset.train_x[index], self.dataset.train_y[index]

    def histogram(self) -> np.ndarray:
        """(num_clients, num_classes) label counts."""
        return label_histogram(self.dataset.train_y.numpy(), list(self.partitions), self.dataset.num_classes)


@lru_cache(maxsize=4)
def federated_data(data: DataConfig, seed: int, held_out: int = 0) -> FederatedData:
    """Load and split the data the scenario describes (cached per process); the ``held_out``
    training examples reserved for pre-training (fedsec.pretraining) are in no partition."""
    dataset = load_dataset(data.dataset, data.root)
    parts = cached_partitions(
        dataset.name, dataset.train_y.numpy(), data.partitioner, data.num_clients, seed
    )
    if held_out:
        reserved = held_out_indices(len(dataset.train_y), held_out, seed)
        parts = [np.setdiff1d(part, reserved, assume_unique=True) for part in parts]
    return FederatedData(dataset, tuple(parts))
