"""The ClientApp: answers the server's partition query and trains on its own partition."""

from __future__ import annotations

import time
from functools import lru_cache

import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedsec.federated_data import federated_data
from fedsec.fl.protocol import (
    CONFIG_RECORD,
    METRICS_RECORD,
    MODEL_RECORD,
    NUM_EXAMPLES_KEY,
    PARTITION_KEY,
    ROUND_KEY,
    SCENARIO_KEY,
    UPDATE_RECORD,
    record_vector,
    vector_record,
)
from fedsec.models import build_model
from fedsec.params import load_vector, model_vector
from fedsec.scenario import Scenario
from fedsec.training import resolve_device, train_local

app = ClientApp()


@lru_cache(maxsize=4)
def _scenario(text: str) -> Scenario:
    return Scenario.model_validate_json(text)


def client_seed(seed: int, round_number: int, partition: int) -> int:
    """The seed of one client's local randomness in one round."""
    return (seed * 1_000_003 + round_number) * 100_003 + partition


def _partition(context: Context) -> int:
    return int(context.node_config[PARTITION_KEY])


@app.query()
def query(message: Message, context: Context) -> Message:
    """Tell the server which partition this node holds."""
    reply = MetricRecord({PARTITION_KEY: _partition(context)})
    return Message(RecordDict({METRICS_RECORD: reply}), reply_to=message)


@app.train()
def train(message: Message, context: Context) -> Message:
    """Load the global model, train locally, reply with the update Δ = w_local − w_global."""
    config: ConfigRecord = message.content.config_records[CONFIG_RECORD]
    scenario = _scenario(str(config[SCENARIO_KEY]))
    round_number = int(config[ROUND_KEY])
    partition = _partition(context)
    torch.set_num_threads(max(1, int(scenario.resources.client_cpus)))
    device = resolve_device(scenario.resources.device)

    started = time.perf_counter()
    data = federated_data(scenario.data, scenario.seed)
    x, y = data.client(partition)
    torch.manual_seed(client_seed(scenario.seed, round_number, partition))
    model = build_model(
        scenario.model.name, data.dataset.image_shape, data.dataset.num_classes,
        data.dataset.mean, data.dataset.std,
    ).to(device)
    global_vector = record_vector(message.content.array_records[MODEL_RECORD]).to(device)
    load_vector(model, global_vector)
    generator = torch.Generator().manual_seed(client_seed(scenario.seed, round_number, partition))
    result = train_local(model, x, y, scenario.client, generator, device)
    update = model_vector(model) - global_vector

    metrics = MetricRecord({
        PARTITION_KEY: partition,
        NUM_EXAMPLES_KEY: result.num_examples,
        "train_loss": result.loss,
        "train_s": time.perf_counter() - started,
    })
    content = RecordDict({UPDATE_RECORD: vector_record(update), METRICS_RECORD: metrics})
    return Message(content, reply_to=message)
