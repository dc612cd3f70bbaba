"""Malicious clients: the glue between the attack library and local training.

An :class:`Attacker` exists only in the process of a client the scenario makes malicious, in a
round its schedule marks active; honest clients never construct one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from fedsec.attacks import ModelAttackContext, build_data_attack, build_model_attack
from fedsec.attacks.data.base import CraftingContext, DataAttack, PoisonedBatch
from fedsec.attacks.model.base import ModelAttack
from fedsec.client import LocalTrainer, LocalUpdate, client_seed
from fedsec.params import float_state, load_vector, unflatten
from fedsec.scenario import AttackConfig, Scenario
from fedsec.training import ClientConfig, TrainingHooks


def attack_active(scenario: Scenario, partition: int, round_number: int) -> bool:
    """Whether ``partition`` is malicious and attacks in ``round_number`` (god view)."""
    attack = scenario.attack
    if attack is None or not attack.schedule.active(round_number):
        return False
    return partition in attack.malicious(scenario.data.num_clients, scenario.seed, round_number)


_RECEIVED: dict[tuple[str, int], dict[int, torch.Tensor]] = {}
"""Global models each malicious partition received in this process, by (scenario, partition) and round."""


def received_models(scenario: Scenario, partition: int, round_number: int, global_vector: torch.Tensor,
                    count: int) -> list[torch.Tensor]:
    """This round's global model and the latest earlier ones ``partition`` received in this process,
    at most ``count``, latest first (a simulation's virtual clients each keep their own)."""
    seen = _RECEIVED.setdefault((scenario.model_dump_json(), partition), {})
    seen[round_number] = global_vector.detach().cpu().clone()
    for old in sorted(seen)[:-count]:
        del seen[old]
    return [seen[r].to(global_vector.device) for r in sorted(seen, reverse=True) if r <= round_number]


@dataclass(frozen=True)
class Attacker:
    """One malicious client in one round."""

    scenario: Scenario
    partition: int
    round_number: int
    sampled: tuple[int, ...]

    @property
    def config(self) -> AttackConfig:
        assert self.scenario.attack is not None
        return self.scenario.attack

    @property
    def malicious(self) -> frozenset[int]:
        """The federation's malicious partitions this round."""
        return self.config.malicious(self.scenario.data.num_clients, self.scenario.seed, self.round_number)

    @property
    def sampled_attackers(self) -> list[int]:
        """Malicious partitions sampled this round, in partition order."""
        malicious = self.malicious
        return [p for p in self.sampled if p in malicious]

    def data_attack(self) -> DataAttack | None:
        """This attacker's data poisoning (DBA gives each attacker its part by malicious rank)."""
        if self.config.data is None:
            return None
        return build_data_attack(self.config.data, attacker_index=sorted(self.malicious).index(self.partition))

    def model_attack(self) -> ModelAttack | None:
        return None if self.config.model is None else build_model_attack(self.config.model)

    def local_config(self) -> ClientConfig:
        """The malicious client's training settings (its own epochs / lr where the scenario sets them)."""
        changes = {k: v for k, v in (("local_epochs", self.config.local_epochs), ("lr", self.config.lr)) if v is not None}
        return self.scenario.client.model_copy(update=changes)

    def known_partitions(self) -> list[int]:
        """Partitions whose benign update this attacker knows, per ``attack.collusion``."""
        return {
            "none": [self.partition],
            "attackers": self.sampled_attackers,
            "full-knowledge": list(self.sampled),
        }[self.config.collusion]

    def training_hooks(
        self, data_attack: DataAttack | None, model_attack: ModelAttack | None,
        benign: torch.Tensor | None, trainer: LocalTrainer, global_vector: torch.Tensor,
    ) -> TrainingHooks:
        """Data poisoning, and the model attack's loss penalty and gradient mask, as configured."""
        transform = penalty = masks = None
        if data_attack is not None:
            generator = torch.Generator().manual_seed(client_seed(self.scenario.seed, self.round_number, self.partition) + 1)
            transform = lambda x, y: data_attack.poison(x, y, generator)[:2]  # noqa: E731
        if model_attack is not None:
            term = model_attack.training_penalty(_parameter_vector(trainer, global_vector))
            if term is not None:
                penalty = lambda m: term(torch.cat([p.reshape(-1) for p in m.parameters()]))  # noqa: E731
            mask = None if benign is None else model_attack.gradient_mask(benign.mean(0))
            if mask is not None:
                masks = dict(unflatten(mask.float(), float_state(trainer.model)))
        return TrainingHooks(transform, penalty, masks)

    def crafted(self, data_attack: DataAttack, trainer: LocalTrainer,
                global_vector: torch.Tensor) -> PoisonedBatch | None:
        """This client's partition with poisons crafted on the global models it received (None for
        attacks that poison batch by batch)."""
        count = data_attack.surrogate_models()
        if count == 0:
            return None
        models = []
        for vector in received_models(self.scenario, self.partition, self.round_number, global_vector, count):
            model = copy.deepcopy(trainer.model)
            load_vector(model, vector)
            models.append(model)
        dataset = trainer.data.dataset
        n = self.scenario.data.test_samples or len(dataset.test_y)
        seed = client_seed(self.scenario.seed, self.round_number, self.partition) + 3
        context = CraftingContext(models, dataset.test_x[:n], dataset.test_y[:n], torch.Generator().manual_seed(seed))
        return data_attack.craft(*trainer.data.client(self.partition), context)

    def train(self, trainer: LocalTrainer, global_vector: torch.Tensor) -> LocalUpdate:
        """Benign updates it knows (if the model attack uses them), poisoned training (on a partition
        with crafted poisons, or with batches poisoned on the fly), model attack."""
        data_attack, model_attack = self.data_attack(), self.model_attack()
        known = self.known_partitions() if model_attack is not None else []
        benign_runs = {p: trainer.benign(p, self.round_number, global_vector) for p in known}
        benign = torch.stack([u.update for u in benign_runs.values()]) if benign_runs else None
        crafted = None if data_attack is None else self.crafted(data_attack, trainer, global_vector)
        batch_attack = data_attack if crafted is None else None
        hooks = self.training_hooks(batch_attack, model_attack, benign, trainer, global_vector)
        config = self.local_config()
        if crafted is not None:
            seed = client_seed(self.scenario.seed, self.round_number, self.partition)
            own = trainer.train_on(crafted.x, crafted.y, seed, global_vector, config, hooks)
        elif hooks.empty and config == self.scenario.client and self.partition in benign_runs:
            own = benign_runs[self.partition]  # the same training, already done
        else:
            own = trainer.train(self.partition, self.round_number, global_vector, config, hooks)
        if model_attack is None:
            return own
        ctx = ModelAttackContext(
            global_vector=global_vector, benign_updates=benign,
            num_clients=self.scenario.data.num_clients, num_malicious=len(self.malicious),
            num_clients_per_round=len(self.sampled),
            round_examples=sum(len(trainer.data.partitions[p]) for p in self.sampled),
            own_examples=own.result.num_examples, server_lr=self.scenario.server.lr,
            generator=torch.Generator().manual_seed(client_seed(self.scenario.seed, self.round_number, self.partition) + 2),
        )
        return LocalUpdate(model_attack(own.update, ctx), own.result)


def _parameter_vector(trainer: LocalTrainer, global_vector: torch.Tensor) -> torch.Tensor:
    """The global model's trainable parameters (not buffers) as one vector, in parameters() order."""
    state = unflatten(global_vector, float_state(trainer.model))
    return torch.cat([state[name].reshape(-1) for name, _ in trainer.model.named_parameters()]).detach()
