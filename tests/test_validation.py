"""Reply validation: every malformed update is rejected with a reason, never aggregated."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Error, Message, MetricRecord, RecordDict

from fedsec.fl.protocol import METRICS_RECORD, NUM_EXAMPLES_KEY, PARTITION_KEY, UPDATE_RECORD, VECTOR_KEY, vector_record
from fedsec.fl.validation import RejectedReply, ValidReply, validate_reply

D = 16


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps messages with the running task's identity; give this process one."""
    from flwr.supercore.task_identity import TaskIdentity

    for field, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, field, value)


def reply(update: ArrayRecord | None = None, metrics: dict | None = None) -> Message:
    content = RecordDict()
    if update is not None:
        content[UPDATE_RECORD] = update
    if metrics is not False:
        content[METRICS_RECORD] = MetricRecord(metrics or {PARTITION_KEY: 3, NUM_EXAMPLES_KEY: 100, "train_s": 1.0})
    return Message(content, dst_node_id=1, message_type="train")


def array_record(values: np.ndarray) -> ArrayRecord:
    record = ArrayRecord()
    record[VECTOR_KEY] = Array(values)
    return record


def garbage_record() -> ArrayRecord:
    good = Array(np.zeros(D, dtype=np.float32))
    record = ArrayRecord()
    record[VECTOR_KEY] = Array(dtype=good.dtype, shape=good.shape, stype=good.stype, data=b"\x93NUMPY garbage" * 4)
    return record


def mislabelled_record() -> ArrayRecord:
    """Header says float32 (16,), payload is float64 (16,)."""
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(D, dtype=np.float64))
    good = Array(np.zeros(D, dtype=np.float32))
    record = ArrayRecord()
    record[VECTOR_KEY] = Array(dtype=good.dtype, shape=good.shape, stype=good.stype, data=buffer.getvalue()[:4 * D + 128])
    return record


MALFORMED = {
    "nan": (lambda: reply(vector_record(torch.full((D,), float("nan")))), "non-finite"),
    "inf": (lambda: reply(vector_record(torch.tensor([float("inf")] + [0.0] * (D - 1)))), "non-finite"),
    "wrong shape": (lambda: reply(vector_record(torch.zeros(D + 1))), "shape"),
    "2-d shape": (lambda: reply(array_record(np.zeros((4, 4), dtype=np.float32))), "shape"),
    "wrong dtype": (lambda: reply(array_record(np.zeros(D, dtype=np.float64))), "dtype"),
    "integer dtype": (lambda: reply(array_record(np.zeros(D, dtype=np.int32))), "dtype"),
    "garbage bytes": (lambda: reply(garbage_record()), "undecodable"),
    "mislabelled payload": (lambda: reply(mislabelled_record()), "payload"),
    "missing update": (lambda: reply(None), "missing field"),
    "missing metrics": (lambda: reply(vector_record(torch.zeros(D)), metrics=False), "missing field"),
    "extra arrays": (lambda: reply(ArrayRecord({VECTOR_KEY: Array(np.zeros(D, np.float32)), "x": Array(np.zeros(1, np.float32))})), "keys"),
    "zero examples": (lambda: reply(vector_record(torch.zeros(D)), {PARTITION_KEY: 3, NUM_EXAMPLES_KEY: 0}), "num-examples"),
    "float examples": (lambda: reply(vector_record(torch.zeros(D)), {PARTITION_KEY: 3, NUM_EXAMPLES_KEY: 1.5}), "num-examples"),
    "impostor partition": (lambda: reply(vector_record(torch.zeros(D)), {PARTITION_KEY: 4, NUM_EXAMPLES_KEY: 9}), "partition"),
    "absurd norm": (lambda: reply(vector_record(torch.full((D,), 1e6))), "norm"),
}


@pytest.mark.parametrize("kind", MALFORMED, ids=str)
def test_malformed_reply_is_rejected_with_reason(kind: str) -> None:
    make, reason = MALFORMED[kind]
    result = validate_reply(make(), expected_partition=3, dimension=D, max_norm=1e3)
    assert isinstance(result, RejectedReply), kind
    assert reason in result.reason
    assert result.partition == 3


def test_error_reply_is_rejected() -> None:
    sent = Message(RecordDict(), dst_node_id=1, message_type="train")
    failed = Message(Error(code=0, reason="client crashed"), reply_to=sent)
    result = validate_reply(failed, 3, D, None)
    assert isinstance(result, RejectedReply) and "client crashed" in result.reason


def test_valid_reply_passes() -> None:
    update = torch.linspace(-1, 1, D)
    result = validate_reply(reply(vector_record(update)), 3, D, max_norm=None)
    assert isinstance(result, ValidReply)
    assert torch.equal(result.update, update) and result.num_examples == 100
