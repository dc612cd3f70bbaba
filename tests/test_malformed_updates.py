"""A corpus of malformed client replies: each kind is rejected with a recorded reason, and a
whole server round over a scripted Grid never aggregates any of them."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Error, Message, MessageType, MetricRecord, RecordDict

from fedsec.fl.protocol import METRICS_RECORD, NUM_EXAMPLES_KEY, PARTITION_KEY, UPDATE_RECORD, VECTOR_KEY
from fedsec.fl.server import FederationServer
from fedsec.fl.validation import RejectedReply, ValidReply, validate_reply
from fedsec.results import RunDirectory
from fedsec.scenario import Scenario

MAX_NORM = 1e3
MAX_EXAMPLES = 10_000

Content = RecordDict | Error
Kind = Callable[[int, int], Content]  # (dimension, partition) -> the reply's content


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps messages with the running task's identity; give this process one."""
    from flwr.supercore.task_identity import TaskIdentity

    for field, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, field, value)


# -- building replies ---------------------------------------------------------------------------


def metrics(partition: int, changes: dict[str, object] | None = None) -> MetricRecord:
    """What an honest client reports, with ``changes`` applied (None removes a key)."""
    values = {PARTITION_KEY: partition, NUM_EXAMPLES_KEY: 50, "train_loss": 0.5, "train_s": 0.1, **(changes or {})}
    return MetricRecord({k: v for k, v in values.items() if v is not None})


def content(update: ArrayRecord | None, reported: MetricRecord | None) -> RecordDict:
    records = RecordDict()
    if update is not None:
        records[UPDATE_RECORD] = update
    if reported is not None:
        records[METRICS_RECORD] = reported
    return records


def one_array(array: Array) -> ArrayRecord:
    record = ArrayRecord()
    record[VECTOR_KEY] = array
    return record


def forged(dimension: int, data: bytes) -> ArrayRecord:
    """A record whose header claims float32 (dimension,) but whose payload is ``data``."""
    header = Array(np.zeros(dimension, dtype=np.float32))
    return one_array(Array(dtype=header.dtype, shape=header.shape, stype=header.stype, data=data))


def saved(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=True)
    return buffer.getvalue()


def update_of(values: Callable[[int], np.ndarray]) -> Kind:
    """A reply carrying the array ``values(dimension)`` and honest metrics."""
    return lambda d, p: content(one_array(Array(values(d))), metrics(p))


def reporting(changes: dict[str, object]) -> Kind:
    """A reply with a plausible update and the metrics changed by ``changes``."""
    return lambda d, p: content(one_array(Array(np.full(d, 1e-3, dtype=np.float32))), metrics(p, changes))


def with_value(value: float, index: int = 0) -> Callable[[int], np.ndarray]:
    def values(d: int) -> np.ndarray:
        vector = np.zeros(d, dtype=np.float32)
        vector[index] = value
        return vector
    return values


# kind -> (reply builder, words the recorded reason must contain)
CORPUS: dict[str, tuple[Kind, str]] = {
    "nan": (update_of(with_value(float("nan"))), "non-finite values"),
    "+inf": (update_of(with_value(float("inf"))), "non-finite values"),
    "-inf": (update_of(with_value(float("-inf"), index=-1)), "non-finite values"),
    "too long": (update_of(lambda d: np.zeros(d + 1, np.float32)), "shape"),
    "too short": (update_of(lambda d: np.zeros(d - 1, np.float32)), "shape"),
    "empty array": (update_of(lambda d: np.zeros(0, np.float32)), "shape"),
    "2-d array": (update_of(lambda d: np.zeros((1, d), np.float32)), "shape"),
    "float64": (update_of(lambda d: np.zeros(d, np.float64)), "dtype float64"),
    "float16": (update_of(lambda d: np.zeros(d, np.float16)), "dtype float16"),
    "int32": (update_of(lambda d: np.zeros(d, np.int32)), "dtype int32"),
    "oversized payload": (lambda d, p: content(forged(d, saved(np.zeros(2 * d + 1024, np.float32))), metrics(p)), "payload of"),
    "garbage bytes": (lambda d, p: content(forged(d, b"\x93NUMPY" + bytes(range(256)) * 2), metrics(p)), "undecodable"),
    "pickled objects": (lambda d, p: content(forged(d, saved(np.array([{"x": 1}], dtype=object))), metrics(p)), "undecodable"),
    "float64 under a float32 header": (lambda d, p: content(forged(d, saved(np.zeros(d // 2, np.float64))), metrics(p)), "decodes to float64"),
    "extra array": (lambda d, p: content(ArrayRecord({VECTOR_KEY: Array(np.zeros(d, np.float32)),
                                                     "extra": Array(np.zeros(1, np.float32))}), metrics(p)), "keys"),
    "missing update record": (lambda d, p: content(None, metrics(p)), "missing field"),
    "missing metrics record": (lambda d, p: content(one_array(Array(np.zeros(d, np.float32))), None), "missing field"),
    "missing example count": (reporting({NUM_EXAMPLES_KEY: None}), "bad num-examples: None"),
    "zero examples": (reporting({NUM_EXAMPLES_KEY: 0}), "bad num-examples: 0"),
    "negative examples": (reporting({NUM_EXAMPLES_KEY: -5}), "bad num-examples: -5"),
    "fractional examples": (reporting({NUM_EXAMPLES_KEY: 2.5}), "bad num-examples: 2.5"),
    "absurd examples": (reporting({NUM_EXAMPLES_KEY: 10**12}), "above the bound"),
    "missing partition claim": (reporting({PARTITION_KEY: None}), "reply from partition None"),
    "missing training time": (reporting({"train_s": None}), "missing metric train_s"),
    "nan training loss": (reporting({"train_loss": float("nan")}), "non-finite metrics: train_loss"),
    "norm above the bound": (update_of(lambda d: np.full(d, MAX_NORM, np.float32)), "norm"),
}
IMPOSTOR = "wrong partition claim"
ERROR = "error reply"


def build(kind: str, dimension: int, partition: int) -> Content:
    if kind == IMPOSTOR:
        return reporting({PARTITION_KEY: partition + 1})(dimension, partition)
    if kind == ERROR:
        return Error(code=0, reason="client raised RuntimeError")
    return CORPUS[kind][0](dimension, partition)


REASONS = {**{kind: reason for kind, (_, reason) in CORPUS.items()}, IMPOSTOR: "expected", ERROR: "client raised"}


def as_reply(built: Content, sender: int) -> Message:
    sent = Message(RecordDict(), dst_node_id=sender, message_type=MessageType.TRAIN)
    return Message(built, reply_to=sent)


# -- each kind alone ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(REASONS), ids=str)
def test_every_malformed_kind_is_rejected_with_its_reason(kind: str) -> None:
    dimension, partition = 16, 3
    result = validate_reply(as_reply(build(kind, dimension, partition), sender=9), partition, dimension,
                            max_norm=MAX_NORM, max_examples=MAX_EXAMPLES)
    assert isinstance(result, RejectedReply), kind
    assert REASONS[kind] in result.reason, result.reason
    assert result.partition == partition


def test_the_corpus_covers_the_required_kinds() -> None:
    assert len(REASONS) >= 10


def test_an_honest_reply_with_the_same_builders_passes() -> None:
    result = validate_reply(as_reply(reporting({})(16, 3), sender=9), 3, 16, MAX_NORM, MAX_EXAMPLES)
    assert isinstance(result, ValidReply) and result.num_examples == 50
    assert torch.equal(result.update, torch.full((16,), 1e-3))


# -- a whole round over a scripted Grid ------------------------------------------------------


class ScriptedGrid:
    """A Grid whose nodes answer the partition query honestly and reply to training with
    ``replies[partition](dimension)``; node ids are 1000 + partition."""

    def __init__(self, replies: dict[int, Callable[[int], Content]], dimension: int) -> None:
        self.replies = replies
        self.dimension = dimension
        self.trained: list[int] = []

    def get_node_ids(self) -> Iterable[int]:
        return [1000 + p for p in self.replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        answers = []
        for message in messages:
            partition = message.metadata.dst_node_id - 1000
            if message.metadata.message_type == MessageType.QUERY:
                answer: Content = RecordDict({METRICS_RECORD: MetricRecord({PARTITION_KEY: partition})})
            else:
                self.trained.append(partition)
                answer = self.replies[partition](self.dimension)
            answers.append(Message(answer, reply_to=message))
        return answers


def honest(partition: int) -> Callable[[int], Content]:
    """A valid reply: a small seeded update, weight 10 * (partition + 1)."""
    def reply(d: int) -> Content:
        rng = np.random.default_rng(partition)
        update = (rng.standard_normal(d) * 1e-2).astype(np.float32)
        return content(one_array(Array(update)), metrics(partition, {NUM_EXAMPLES_KEY: 10 * (partition + 1)}))
    return reply


def test_malformed_replies_are_never_aggregated_and_are_recorded(tmp_path: Path) -> None:
    kinds = list(REASONS)
    honest_partitions = [0, 1, 2]
    malformed = {len(honest_partitions) + i: kind for i, kind in enumerate(kinds)}
    num_clients = len(honest_partitions) + len(malformed)
    scenario = Scenario.model_validate({
        "name": "malformed", "rounds": 1, "seed": 3,
        "data": {"dataset": "digits", "num_clients": num_clients},
        "model": {"name": "mlp"}, "resources": {"device": "cpu"},
        "server": {"max_update_norm": MAX_NORM},
        "output": {"dir": str(tmp_path), "plots": False, "save_model": False},
    })
    run_dir = RunDirectory.create(tmp_path, scenario.name)
    replies = {p: honest(p) for p in honest_partitions}
    replies |= {p: (lambda d, p=p, kind=kind: build(kind, d, p)) for p, kind in malformed.items()}
    grid = ScriptedGrid(replies, dimension=0)
    server = FederationServer(scenario, run_dir, grid, show_progress=False)  # type: ignore[arg-type]
    grid.dimension = server.global_vector.numel()
    start = server.global_vector.clone()

    server.run()

    assert sorted(grid.trained) == list(range(num_clients))
    honest_updates = torch.stack([torch.from_numpy(honest(p)(grid.dimension)[UPDATE_RECORD][VECTOR_KEY].numpy())
                                  for p in honest_partitions])
    weights = torch.tensor([10.0 * (p + 1) for p in honest_partitions])
    expected = start + (weights[:, None] * honest_updates).sum(0) / weights.sum()
    torch.testing.assert_close(server.global_vector, expected)

    (record,) = run_dir.rounds()
    errors = sum(kind == ERROR for kind in malformed.values())
    assert record["replies"] == len(honest_partitions)
    assert record["rejected"] + record.get("failed", 0) == len(malformed)
    assert record["rejected"] == len(malformed) - errors
    clients = {c["client"]: c for c in map(json.loads, run_dir.file("clients.jsonl").read_text().splitlines())}
    for partition, kind in malformed.items():
        assert clients[partition].get("accepted") is not True, kind
        assert REASONS[kind] in clients[partition]["reason"], (kind, clients[partition]["reason"])
    assert all(clients[p].get("accepted") is True and "reason" not in clients[p] for p in honest_partitions)
