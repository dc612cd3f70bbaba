"""Malicious clients inside the ClientApp: who attacks, when, and what their updates look like."""

from __future__ import annotations

import pytest
import torch
from flwr.app import ConfigRecord, Context, Message, RecordDict

from fedsec.adversary import Attacker, attack_active
from fedsec.client import LocalTrainer
from fedsec.federated_data import federated_data
from fedsec.fl import client_app
from fedsec.fl.protocol import (
    CONFIG_RECORD,
    MODEL_RECORD,
    ROUND_KEY,
    SAMPLED_KEY,
    SCENARIO_KEY,
    UPDATE_RECORD,
    record_vector,
    vector_record,
)
from fedsec.sampling import sample_clients
from fedsec.params import model_vector
from fedsec.scenario import Scenario, load_scenario, parse_scenario

BASE = {
    "name": "adv", "seed": 1, "rounds": 3,
    "data": {"dataset": "synthetic", "num_clients": 8, "partitioner": {"name": "iid"}},
    "model": {"name": "mlp"}, "client": {"batch_size": 50, "lr": 0.05},
    "sampling": {"clients_per_round": 4}, "resources": {"device": "cpu"},
}
SAMPLED = (1, 2, 5, 6)


def scenario(attack: dict) -> Scenario:
    return parse_scenario({**BASE, "attack": attack})


def trainer_for(s: Scenario) -> LocalTrainer:
    return LocalTrainer(s, federated_data(s.data, s.seed), torch.device("cpu"))


def global_vector(trainer: LocalTrainer) -> torch.Tensor:
    return torch.full_like(model_vector(trainer.model), 0.01)


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Flower's message identity for this process, and one torch thread as in a client actor
    (so that updates computed here and in the ClientApp are bitwise comparable)."""
    from flwr.supercore.task_identity import TaskIdentity

    for field, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, field, value)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def client_app_update(s: Scenario, partition: int, round_number: int, vector: torch.Tensor) -> torch.Tensor:
    """Run the ClientApp's train handler as Flower would, for one node."""
    config = ConfigRecord({ROUND_KEY: round_number, SCENARIO_KEY: s.model_dump_json(), SAMPLED_KEY: list(SAMPLED)})
    message = Message(RecordDict({MODEL_RECORD: vector_record(vector), CONFIG_RECORD: config}),
                      dst_node_id=1, message_type="train")
    context = Context(run_id=1, node_id=1, node_config={"partition-id": partition}, state=RecordDict(), run_config={})
    reply = client_app.train(message, context)
    return record_vector(reply.content.array_records[UPDATE_RECORD])


def test_honest_clients_never_attack_and_attackers_only_in_their_window() -> None:
    s = scenario({"ids": [2], "schedule": {"start_round": 2, "end_round": 2},
                  "data": {"name": "badnets", "poison_fraction": 1.0}, "model": {"name": "scaling", "gamma": 5}})
    trainer = trainer_for(s)
    vector = global_vector(trainer)
    honest = {(p, r): trainer.train(p, r, vector).update for p in (1, 2) for r in (1, 2)}
    assert torch.equal(client_app_update(s, 1, 2, vector), honest[(1, 2)])  # honest client, attack round
    assert torch.equal(client_app_update(s, 2, 1, vector), honest[(2, 1)])  # attacker outside its window
    attacked = client_app_update(s, 2, 2, vector)
    assert not torch.allclose(attacked, honest[(2, 2)])
    assert attack_active(s, 2, 2) and not attack_active(s, 1, 2) and not attack_active(s, 2, 3)


def test_scaling_multiplies_the_poisoned_update() -> None:
    s = scenario({"ids": [2], "data": {"name": "badnets", "poison_fraction": 1.0}, "model": {"name": "scaling"}})
    trainer = trainer_for(s)
    vector = global_vector(trainer)
    attacker = Attacker(s, 2, 1, SAMPLED)
    boosted = attacker.train(trainer, vector).update
    plain = Attacker(scenario({"ids": [2], "data": {"name": "badnets", "poison_fraction": 1.0}}), 2, 1, SAMPLED)
    poisoned = plain.train(trainer, vector).update
    assert torch.allclose(boosted, poisoned * len(SAMPLED), atol=1e-6)


def test_full_knowledge_alie_uses_every_sampled_benign_update() -> None:
    s = scenario({"fraction": 0.25, "model": {"name": "alie", "z": 1.0}, "collusion": "full-knowledge"})
    trainer = trainer_for(s)
    vector = global_vector(trainer)
    benign = torch.stack([trainer.train(p, 1, vector).update for p in SAMPLED])
    attacker = Attacker(s, 2, 1, SAMPLED)
    # the authors' sign and population std (Baruch et al.'s code, docs/reference.md: alie.variant)
    assert torch.allclose(attacker.train(trainer, vector).update, benign.mean(0) + benign.std(0, correction=0), atol=1e-5)


def test_colluding_attackers_train_each_benign_update_once_per_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """In one process (a client actor) the honest clients' updates and the first attacker's benign
    runs are kept for the round: the second attacker trains nothing, and every malicious update is
    bit for bit the one a fresh process computes. A new round or global model trains anew."""
    s = scenario({"ids": [2, 5], "model": {"name": "alie"}, "collusion": "full-knowledge"})
    trainer, fresh = trainer_for(s), trainer_for(s)
    vector = global_vector(trainer)
    trained: list[int] = []
    train_on = LocalTrainer.train_on
    monkeypatch.setattr(LocalTrainer, "train_on", lambda self, *a, **k: trained.append(id(self)) or train_on(self, *a, **k))
    for p in (1, 6):
        trainer.train(p, 1, vector, sanitize=True)  # the honest clients' replies, as the ClientApp trains them
    first = Attacker(s, 2, 1, SAMPLED).train(trainer, vector).update
    assert trained.count(id(trainer)) == 4  # 2 honest clients, then the attackers' own 2 partitions
    second = Attacker(s, 5, 1, SAMPLED).train(trainer, vector).update
    assert trained.count(id(trainer)) == 4
    assert torch.equal(first, Attacker(s, 2, 1, SAMPLED).train(fresh, vector).update)
    assert torch.equal(second, Attacker(s, 5, 1, SAMPLED).train(trainer_for(s), vector).update)
    Attacker(s, 2, 2, SAMPLED).train(trainer, vector)
    Attacker(s, 2, 1, SAMPLED).train(trainer, vector + 0.01)
    assert trained.count(id(trainer)) == 4 + 4 + 4


def test_attackers_without_collusion_keep_no_benign_updates() -> None:
    s = scenario({"ids": [2], "model": {"name": "alie"}})
    trainer = trainer_for(s)
    trainer.train(1, 1, global_vector(trainer))
    assert trainer._benign == {}


@pytest.mark.parametrize("data_attack", ["badnets", "blended", "sig", "wanet", "dba", "label-flip"])
@pytest.mark.parametrize("model_attack", [None, "constrain-scale", "neurotoxin", "sign-flip", "minmax"])
def test_every_attack_combination_gives_a_finite_update(data_attack: str, model_attack: str | None) -> None:
    attack = {"ids": [1, 2, 5], "data": {"name": data_attack}, "collusion": "attackers"}
    if model_attack:
        attack["model"] = {"name": model_attack}
    s = scenario(attack)
    trainer = trainer_for(s)
    vector = global_vector(trainer)
    update = Attacker(s, 5, 1, SAMPLED).train(trainer, vector).update
    assert update.shape == vector.shape and torch.isfinite(update).all()


def test_constrain_scale_respects_its_radius() -> None:
    s = scenario({"ids": [2], "data": {"name": "badnets"}, "model": {"name": "constrain-scale", "radius": 0.05}})
    trainer = trainer_for(s)
    update = Attacker(s, 2, 1, SAMPLED).train(trainer, global_vector(trainer)).update
    assert update.norm() <= 0.05 + 1e-6


def test_model_replacement_attacker_is_sampled_in_its_round() -> None:
    s = load_scenario("scenarios/attacks/model-replacement.yaml")
    shot = s.attack.schedule.single_shot
    sampled = sample_clients(s.seed, shot, s.data.num_clients, s.clients_per_round)
    assert set(s.attack.ids) <= set(sampled)
