"""Node discovery: the deployment engine asks every node once; virtual clients send nothing to a
client that is not sampled, and both routes give the same rounds for a seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flwr.app import ConfigRecord, MessageType, MetricRecord, RecordDict
from local_grid import LocalGrid
from test_simulation import SMALL

from fedsec.federated_data import federated_data
from fedsec.fl.client_app import app as client_app
from fedsec.fl.nodes import FederationError, QueriedNodes, VirtualClients
from fedsec.fl.protocol import CONFIG_RECORD, NUM_EXAMPLES_KEY, SCENARIO_KEY, VIRTUAL_CLIENTS_ENV
from fedsec.fl.server import FederationServer
from fedsec.results import CLIENTS_FILE, RunDirectory, read_jsonl
from fedsec.scenario import Scenario, parse_scenario

TIMINGS = {"train_s", "round_s", "aggregate_s", "eval_s", "client_train_s", "wall_s"}
MANY = {
    **SMALL,
    "data": {"dataset": "digits", "num_clients": 60, "partitioner": {"name": "iid"}},
    "sampling": {"clients_per_round": 5},
    "attack": {"ids": list(range(0, 60, 4)), "model": {"name": "sign-flip", "scale": 5.0}},
    "defenses": [{"name": "foolsgold"}],
}


def scenario(tmp_path: Path) -> Scenario:
    return parse_scenario({**MANY, "output": {"dir": str(tmp_path), "plots": False, "save_model": False}})


def run(tmp_path: Path, virtual: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]], LocalGrid]:
    """One run over a counting in-process grid: its round and client records (timings left out)."""
    s = scenario(tmp_path)
    grid = LocalGrid(client_app, s.clients_per_round if virtual else s.data.num_clients)
    run_dir = RunDirectory.create(tmp_path, s.name)
    FederationServer(s, run_dir, grid, False, virtual_clients=virtual).run()

    def untimed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in TIMINGS} for r in records]

    return untimed(run_dir.rounds()), untimed(read_jsonl(run_dir.file(CLIENTS_FILE))), grid


def test_virtual_clients_match_queried_nodes_without_a_query(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deployed_rounds, deployed_clients, deployed = run(tmp_path / "deployed", virtual=False)
    monkeypatch.setenv(VIRTUAL_CLIENTS_ENV, "1")
    virtual_rounds, virtual_clients, virtual = run(tmp_path / "virtual", virtual=True)
    assert deployed.sent == {MessageType.QUERY: 60, MessageType.TRAIN: 3 * 5}
    assert virtual.sent == {MessageType.TRAIN: 3 * 5} and virtual.node_id_calls == 1
    assert virtual_rounds == deployed_rounds and virtual_clients == deployed_clients
    assert any(c["attacked"] for c in virtual_clients)  # roles follow the partition, not the node


class Listener:
    """An aggregation that needs each node's answer before it trains (as encrypted FedAvg does)."""

    hears_nodes = True

    def __init__(self, s: Scenario) -> None:
        self.scenario_json = s.model_dump_json()
        self.joined: dict[int, int] = {}

    def query_content(self) -> RecordDict:
        return RecordDict({CONFIG_RECORD: ConfigRecord({SCENARIO_KEY: self.scenario_json})})

    def node_joined(self, partition: int, metrics: MetricRecord) -> None:
        assert partition not in self.joined
        self.joined[partition] = int(metrics[NUM_EXAMPLES_KEY])


def test_a_virtual_client_is_heard_once_when_first_sampled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VIRTUAL_CLIENTS_ENV, "1")
    s = scenario(tmp_path)
    grid, listener = LocalGrid(client_app, 5), Listener(s)
    nodes = VirtualClients(grid, listener, 60, 5)  # type: ignore[arg-type]
    nodes.discover()
    first, second = nodes.route([1, 2, 3, 40, 59]), nodes.route([3, 7, 40, 41, 58])
    assert grid.sent == {MessageType.QUERY: 8}
    data = federated_data(s.data, s.seed)
    assert listener.joined == {p: len(data.client(p)[1]) for p in (1, 2, 3, 7, 40, 41, 58, 59)}
    assert sorted(first.values()) == sorted(second.values()) == sorted(grid.get_node_ids())


def test_sender_handles_are_a_bijection(tmp_path: Path) -> None:
    s = scenario(tmp_path)
    queried = QueriedNodes(LocalGrid(client_app, 60), Listener(s), 60)  # type: ignore[arg-type]
    queried.discover()
    for nodes in (queried, VirtualClients(LocalGrid(client_app, 5), Listener(s), 60, 5)):  # type: ignore[arg-type]
        assert sorted(nodes.sender_handles().values()) == list(range(60))
        assert sorted(nodes.sender_handles()) == list(range(60))


def test_fewer_virtual_nodes_than_a_round_samples_are_refused(tmp_path: Path) -> None:
    nodes = VirtualClients(LocalGrid(client_app, 4), Listener(scenario(tmp_path)), 60, 5)  # type: ignore[arg-type]
    with pytest.raises(FederationError, match="5 clients a round need as many virtual nodes, but 4"):
        nodes.discover()


def test_a_deployed_node_refuses_a_message_that_names_its_partition(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VIRTUAL_CLIENTS_ENV, raising=False)
    nodes = VirtualClients(LocalGrid(client_app, 5), Listener(scenario(tmp_path)), 60, 5)  # type: ignore[arg-type]
    nodes.discover()
    with pytest.raises(FederationError, match="holds its own partition"):
        nodes.route([12])
