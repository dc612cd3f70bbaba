"""The ClientApp: answers the server's partition query and trains on its partition (its node's own,
or, on a virtual client of a simulation, the one the message names)."""

from __future__ import annotations

import os
import time
from functools import lru_cache

import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedsec.adversary import Attacker, attack_active
from fedsec.client import LocalTrainer
from fedsec.faults import ClientCrash, crashes, delay_s
from fedsec.federated_data import federated_data
from fedsec.fl.encrypted_transport import client_global_vector, client_update_record
from fedsec.fl.protocol import (
    ADDRESS_RECORD,
    CONFIG_RECORD,
    METRICS_RECORD,
    MODEL_RECORD,
    NUM_EXAMPLES_KEY,
    PARTITION_KEY,
    ROUND_KEY,
    SAMPLED_KEY,
    SCENARIO_KEY,
    UPDATE_RECORD,
    VIRTUAL_CLIENTS_ENV,
    record_vector,
    vector_record,
)
from fedsec.scenario import Scenario
from fedsec.training import resolve_device

app = ClientApp()


@lru_cache(maxsize=2)
def _trainer(scenario_json: str) -> LocalTrainer:
    """Scenario, data and model of this process, built once per scenario."""
    scenario = Scenario.model_validate_json(scenario_json)
    device = resolve_device(scenario.resources.device)
    return LocalTrainer(scenario, federated_data(scenario.data, scenario.seed, scenario.held_out_examples), device)


def _partition(message: Message, context: Context) -> int:
    """The partition named by the message on a virtual client, else the node's own."""
    address = message.content.config_records.get(ADDRESS_RECORD)
    if address is None:
        return int(context.node_config[PARTITION_KEY])
    if not os.environ.get(VIRTUAL_CLIENTS_ENV):
        raise PermissionError("this node holds its own partition; a message may not name another")
    return int(address[PARTITION_KEY])


@app.query()
def query(message: Message, context: Context) -> Message:
    """Tell the server which partition this node holds (and its example count, when the query
    carries the scenario: encrypted FedAvg needs the counts before training)."""
    partition = _partition(message, context)
    reply = MetricRecord({PARTITION_KEY: partition})
    if CONFIG_RECORD in message.content.config_records:
        trainer = _trainer(str(message.content.config_records[CONFIG_RECORD][SCENARIO_KEY]))
        reply[NUM_EXAMPLES_KEY] = len(trainer.data.partitions[partition])
    return Message(RecordDict({METRICS_RECORD: reply}), reply_to=message)


@app.train()
def train(message: Message, context: Context) -> Message:
    """Load the global model, train locally (maliciously if the scenario says so), reply with
    the update Δ = w_local − w_global."""
    started = time.perf_counter()
    config: ConfigRecord = message.content.config_records[CONFIG_RECORD]
    trainer = _trainer(str(config[SCENARIO_KEY]))
    scenario = trainer.scenario
    round_number = int(config[ROUND_KEY])
    partition = _partition(message, context)
    if crashes(scenario.faults, scenario.seed, round_number, partition):
        raise ClientCrash(f"injected crash of client {partition} in round {round_number}")
    time.sleep(delay_s(scenario.faults, scenario.seed, round_number, partition))
    torch.set_num_threads(scenario.resources.client_threads)
    model = message.content.array_records[MODEL_RECORD]
    he_costs: dict[str, float] = {}  # seconds spent decrypting / encrypting when encryption is on
    if scenario.encryption.enabled:
        global_vector, he_costs["decrypt_s"] = client_global_vector(model, config)
    else:
        global_vector = record_vector(model)
    global_vector = global_vector.to(trainer.device)

    if attack_active(scenario, partition, round_number):
        sampled = tuple(int(p) for p in config[SAMPLED_KEY])
        local = Attacker(scenario, partition, round_number, sampled).train(trainer, global_vector)
    else:
        local = trainer.train(partition, round_number, global_vector, sanitize=True)

    metrics = MetricRecord({
        PARTITION_KEY: partition,
        NUM_EXAMPLES_KEY: local.result.num_examples,
        "train_loss": local.result.loss,
        "train_s": time.perf_counter() - started,
    })
    if local.sanitized is not None:
        # Sanitization's outcome for the evaluator, who alone reads the supply's mask of poisons;
        # the server's defenses see updates and example counts only.
        metrics["sanitized"] = int(local.sanitized.sum())
        metrics["sanitized_poisons"] = int((local.sanitized & trainer.holding(partition).mask).sum())
    if scenario.encryption.enabled:
        update, he_costs["encrypt_s"] = client_update_record(local.update.cpu(), partition, config)
    else:
        update = vector_record(local.update)
    for key, seconds in he_costs.items():
        metrics[key] = seconds
    content = RecordDict({UPDATE_RECORD: update, METRICS_RECORD: metrics})
    return Message(content, reply_to=message)
