"""What travels between server and clients: record keys and vector <-> record codecs.

Models travel as one flat float32 vector (the model's floating-point state in
``state_dict`` order): the global model down, the client's update Δ = w_client − w_global up.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

QUERY_PARTITION = "query"
VECTOR_KEY = "vector"
MODEL_RECORD = "model"
UPDATE_RECORD = "update"
CONFIG_RECORD = "config"
METRICS_RECORD = "metrics"
ADDRESS_RECORD = "address"
"""Config record naming the partition a virtual client loads for this message (fedsec.fl.nodes)."""
SCENARIO_KEY = "scenario"
ROUND_KEY = "round"
SAMPLED_KEY = "sampled"
PARTITION_KEY = "partition-id"
NUM_EXAMPLES_KEY = "num-examples"
VIRTUAL_CLIENTS_ENV = "FEDSEC_VIRTUAL_CLIENTS"
"""Set in the client processes of a simulation ``fedsec run`` starts: only there may a message name
the partition its node loads; a deployed node holds its own."""


def vector_record(vector: torch.Tensor) -> ArrayRecord:
    """A flat tensor as a one-array record."""
    record = ArrayRecord()
    record[VECTOR_KEY] = Array(vector.detach().to("cpu", torch.float32).numpy())
    return record


def record_vector(record: ArrayRecord) -> torch.Tensor:
    """The flat float32 tensor held by a one-array record (no validation: see validation.py)."""
    return torch.from_numpy(np.asarray(record[VECTOR_KEY].numpy()))


def payload_bytes(record: ArrayRecord) -> int:
    """Serialized bytes of a record's arrays."""
    return sum(len(array.data) for array in record.values())
