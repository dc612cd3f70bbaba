"""Aggregation in the clear: the global model is a tensor, the defense pipeline sees the updates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Message
from torch import nn

from fedsec.client import LocalTrainer, client_seed
from fedsec.defenses import UpdateBatch, build_pipeline
from fedsec.federated_data import FederatedData
from fedsec.fl.aggregation import Aggregation, Decision
from fedsec.fl.protocol import vector_record
from fedsec.fl.validation import RejectedReply, ValidReply, validate_reply
from fedsec.params import load_vector, model_vector
from fedsec.scenario import Scenario
from fedsec.watermark.owner import WatermarkOwner

ROOT_SEED = 0x5EED
"""Mixed with the scenario seed to draw the server's root dataset (FLTrust)."""


class PlaintextAggregation(Aggregation):
    """The global model as a (d,) tensor on ``device``, updated by the scenario's defense pipeline.

    Parameters
    ----------
    scenario : Scenario
        Defenses, server learning rate, update-norm bound, root data (FLTrust).
    data : FederatedData
        The federation's data (the server's root dataset is drawn from its training set).
    initial : Tensor
        (d,) the initial global model.
    device : torch.device
        Where updates are stacked and the defenses run.
    """

    def __init__(self, scenario: Scenario, data: FederatedData, initial: torch.Tensor, device: torch.device) -> None:
        self.scenario = scenario
        self.data = data
        self.device = device
        self.global_vector = initial.to(device)
        self.pipeline = build_pipeline([spec.model_dump() for spec in scenario.defenses])
        self.rejects = self.pipeline.rejects
        self._root: tuple[LocalTrainer, torch.Tensor, torch.Tensor] | None = None

    def broadcast(self, partitions: Sequence[int]) -> tuple[ArrayRecord, dict[str, Any]]:
        """The global model as a float32 record; no extra config."""
        return vector_record(self.global_vector), {}

    def validate(self, reply: Message, partition: int, max_examples: int) -> ValidReply | RejectedReply:
        """See fedsec.fl.validation.validate_reply (shape, dtype, finiteness, norm bound, envelope)."""
        return validate_reply(reply, partition, self.global_vector.numel(), self.scenario.server.max_update_norm,
                              max_examples)

    def root_update(self, round_number: int) -> torch.Tensor | None:
        """The server's own update on its root dataset (FLTrust's reference), when the scenario declares one."""
        root = self.scenario.root_data
        if root is None:
            return None
        if self._root is None:
            rng = np.random.default_rng([self.scenario.seed, ROOT_SEED])
            index = torch.from_numpy(rng.choice(len(self.data.dataset.train_y), root.samples, replace=False))
            trainer = LocalTrainer(self.scenario, self.data, self.device)
            self._root = (trainer, self.data.dataset.train_x[index], self.data.dataset.train_y[index])
        trainer, x, y = self._root
        config = self.scenario.client.model_copy(update={"local_epochs": root.local_epochs})
        seed = client_seed(self.scenario.seed, round_number, -1)
        return trainer.train_on(x, y, seed, self.global_vector, config).update

    def aggregate(self, round_number: int, valid: Sequence[ValidReply], senders: Sequence[int],
                  generator: torch.Generator) -> Decision:
        """Run the defense pipeline on the stacked updates, then w += lr * aggregate. The pipeline sees
        updates, example counts, the global model, the root update, the round's generator and opaque
        sender handles (never partitions or roles)."""
        batch = UpdateBatch.of(
            torch.stack([r.update for r in valid]).to(self.device),
            torch.tensor([float(r.num_examples) for r in valid], device=self.device),
            self.global_vector,
            server_update=self.root_update(round_number),
            generator=generator,
            senders=torch.tensor(list(senders), dtype=torch.int64, device=self.device),
        )
        decided = self.pipeline(batch)
        self.global_vector = self.global_vector + self.scenario.server.lr * decided.aggregate
        return Decision(decided.accepted, dict(decided.scores), dict(decided.info), decided.contributions)

    def evaluator_view(self) -> torch.Tensor:
        """The global model itself."""
        return self.global_vector

    def owner_step(self, owner: WatermarkOwner, round_number: int, model: nn.Module) -> dict[str, float]:
        """The owner embeds into (and verifies) the plaintext global model."""
        load_vector(model, self.global_vector)
        record = owner.after_aggregation(round_number, model)
        self.global_vector = model_vector(model)
        return record

    def state_dict(self) -> dict[str, Any]:
        """The global model and the defense pipeline's state."""
        return {"global_vector": self.global_vector.detach().cpu(), "defenses": self.pipeline.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.global_vector = state["global_vector"].to(self.device)
        self.pipeline.load_state_dict(state["defenses"])
