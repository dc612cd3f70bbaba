"""What one client computes in a round, independent of Flower: honest or malicious training."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from fedsec.attacks.data.base import PoisonedBatch
from fedsec.poisoned_supply import SUPPLY_ROUND, supplied_partition
from fedsec.federated_data import FederatedData
from fedsec.models import build_model
from fedsec.params import load_vector, model_vector
from fedsec.pretraining import freeze_for_fine_tuning
from fedsec.privacy.dp_sgd import DPSGDConfig, train_dp_sgd
from fedsec.scenario import Scenario
from fedsec.training import ClientConfig, TrainingHooks, TrainResult, train_local


def client_seed(seed: int, round_number: int, partition: int) -> int:
    """The seed of one client's local randomness in one round."""
    return (seed * 1_000_003 + round_number) * 100_003 + partition


@dataclass(frozen=True)
class LocalUpdate:
    """A client's reply: its update Δ = w_local − w_global (d,) and training statistics; ``sanitized``:
    the bool mask of the rows its data sanitization removed (None when it did not sanitize)."""

    update: torch.Tensor
    result: TrainResult
    sanitized: torch.Tensor | None = None


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
        if scenario.pretraining is not None:
            freeze_for_fine_tuning(self.model, scenario.pretraining.fine_tune)
        self._held: dict[int, PoisonedBatch] = {}
        attack = scenario.attack
        self._keeps_benign = attack is not None and attack.model is not None and attack.collusion != "none"
        self._benign_origin: tuple[int, torch.Tensor] | None = None
        self._benign: dict[int, LocalUpdate] = {}

    def holding(self, partition: int) -> PoisonedBatch:
        """``partition``'s data as its client holds it (with the poisons of a poisoned data supply, and
        their mask, which only the evaluator reads), built once per process."""
        if partition not in self._held:
            seed = client_seed(self.scenario.seed, SUPPLY_ROUND, partition)
            self._held[partition] = supplied_partition(self.scenario, self.data, partition, seed)
        return self._held[partition]

    def train(
        self,
        partition: int,
        round_number: int,
        global_vector: torch.Tensor,
        cfg: ClientConfig | None = None,
        hooks: TrainingHooks = TrainingHooks(),
        sanitize: bool = False,
    ) -> LocalUpdate:
        """Train ``partition``'s data from ``global_vector``; the seed depends on (seed, round, partition)
        only, so the update is the same in whichever process computes it. ``sanitize``: first remove
        the rows the scenario's sanitizer flags (an honest client's defense)."""
        x, y, _ = self.holding(partition)
        seed = client_seed(self.scenario.seed, round_number, partition)
        removed = None
        if sanitize and self.scenario.sanitization is not None:
            load_vector(self.model, global_vector)
            removed = self.scenario.sanitization.flag(self.model, x, y, self.device, seed)
            x, y = x[~removed], y[~removed]
        privacy = self.scenario.privacy
        dp_sgd = privacy.dp_sgd if privacy is not None and hooks.empty else None  # a training hook is an attacker's own
        local = self.train_on(x, y, seed, global_vector, cfg or self.scenario.client, hooks, dp_sgd)
        if cfg is None and hooks.empty and removed is None:
            self._keep_benign(partition, round_number, global_vector, local)
        return local if removed is None else replace(local, sanitized=removed)

    def benign(self, partition: int, round_number: int, global_vector: torch.Tensor) -> LocalUpdate:
        """The update ``partition`` sends as an honest client without sanitization, trained at most
        once per round and global model in this process: colluding attackers that know the round's
        benign updates read them here instead of each training them again."""
        origin = self._benign_origin
        if origin is not None and origin[0] == round_number and torch.equal(origin[1], global_vector):
            kept = self._benign.get(partition)
            if kept is not None:
                return kept
        return self.train(partition, round_number, global_vector)

    def _keep_benign(self, partition: int, round_number: int, global_vector: torch.Tensor, local: LocalUpdate) -> None:
        """Keep ``local`` for :meth:`benign` when the scenario's attackers learn others' benign
        updates; a new round or global model (a fingerprinted copy) drops the updates kept before."""
        if not self._keeps_benign:
            return
        origin = self._benign_origin
        if origin is None or origin[0] != round_number or not torch.equal(origin[1], global_vector):
            self._benign_origin, self._benign = (round_number, global_vector.clone()), {}
        self._benign[partition] = local

    def train_on(
        self, x: torch.Tensor, y: torch.Tensor, seed: int, global_vector: torch.Tensor,
        cfg: ClientConfig, hooks: TrainingHooks = TrainingHooks(), dp_sgd: DPSGDConfig | None = None,
    ) -> LocalUpdate:
        """Train on (x, y) from ``global_vector`` with all randomness drawn from ``seed`` (with
        DP-SGD when ``dp_sgd`` is given)."""
        torch.manual_seed(seed)
        load_vector(self.model, global_vector)
        generator = torch.Generator().manual_seed(seed)
        if dp_sgd is not None:
            result = train_dp_sgd(self.model, x, y, cfg, dp_sgd, generator, self.device)
        else:
            result = train_local(self.model, x, y, cfg, generator, self.device, hooks)
        return LocalUpdate(model_vector(self.model) - global_vector, result)
