"""What one client computes in a round, independent of Flower: honest or malicious training."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fedsec.federated_data import FederatedData
from fedsec.models import build_model
from fedsec.params import load_vector, model_vector
from fedsec.scenario import Scenario
from fedsec.training import ClientConfig, TrainingHooks, TrainResult, train_local


def client_seed(seed: int, round_number: int, partition: int) -> int:
    """The seed of one client's local randomness in one round."""
    return (seed * 1_000_003 + round_number) * 100_003 + partition


@dataclass(frozen=True)
class LocalUpdate:
    """A client's reply: its update Δ = w_local − w_global (d,) and training statistics."""

    update: torch.Tensor
    result: TrainResult


class LocalTrainer:
    """Trains copies of the global model on clients' partitions, reproducibly."""

    def __init__(self, scenario: Scenario, data: FederatedData, device: torch.device) -> None:
        self.scenario = scenario
        self.data = data
        self.device = device
        ds = data.dataset
        self.model: nn.Module = build_model(
            scenario.model.name, ds.image_shape, ds.num_classes, ds.mean, ds.std
        ).to(device)

    def train(
        self,
        partition: int,
        round_number: int,
        global_vector: torch.Tensor,
        cfg: ClientConfig | None = None,
        hooks: TrainingHooks = TrainingHooks(),
    ) -> LocalUpdate:
        """Train ``partition``'s data from ``global_vector``; the seed depends on (seed, round, partition)
        only, so the update is the same in whichever process computes it."""
        x, y = self.data.client(partition)
        seed = client_seed(self.scenario.seed, round_number, partition)
        return self.train_on(x, y, seed, global_vector, cfg or self.scenario.client, hooks)

    def train_on(
        self, x: torch.Tensor, y: torch.Tensor, seed: int, global_vector: torch.Tensor,
        cfg: ClientConfig, hooks: TrainingHooks = TrainingHooks(),
    ) -> LocalUpdate:
        """Train on (x, y) from ``global_vector`` with all randomness drawn from ``seed``."""
        torch.manual_seed(seed)
        load_vector(self.model, global_vector)
        result = train_local(self.model, x, y, cfg, torch.Generator().manual_seed(seed), self.device, hooks)
        return LocalUpdate(model_vector(self.model) - global_vector, result)
