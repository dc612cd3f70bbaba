"""Per-client fingerprints in a federation: the server sends each sampled client its own copy, each
copy traces to its client with ``fedsec trace``, the global model carries no fingerprint and the
owner's watermark still verifies on the copies. The real server and client apps over a LocalGrid."""

from __future__ import annotations

from pathlib import Path

import torch
from flwr.app import ArrayRecord
from typer.testing import CliRunner

from tests.local_grid import run_locally

from fedsec.cli import app
from fedsec.fl.protocol import record_vector
from fedsec.fl.server import FederationServer
from fedsec.params import load_vector
from fedsec.results import MODEL_FILE, SCENARIO_FILE, RunDirectory, write_atomic
from fedsec.scenario import Scenario, parse_scenario, to_yaml

SCENARIO = {
    "name": "fingerprinted", "seed": 2, "rounds": 2,
    "data": {"dataset": "digits", "num_clients": 6, "partitioner": {"name": "iid"}},
    "model": {"name": "cnn"},
    "client": {"local_epochs": 1, "batch_size": 32, "lr": 0.05},
    "sampling": {"clients_per_round": 3},
    "resources": {"device": "cpu"},
    "watermark": {"scheme": {"name": "uchida", "bits": 32}, "key": "seeded", "owner_samples": 200,
                  "embedding": {"max_steps": 200, "lr": 0.05}, "fingerprints": {"bits": 64}},
    "output": {"plots": False},
}


def fingerprinted_run(tmp_path: Path) -> tuple[RunDirectory, FederationServer, list[dict[int, torch.Tensor]],
                                               list[torch.Tensor]]:
    """The run, its server, the models sent per round (partition -> vector) and the global model
    after every round."""
    sent: list[dict[int, torch.Tensor]] = []
    global_models: list[torch.Tensor] = []
    servers: list[FederationServer] = []

    class Recording(FederationServer):
        def models_sent(self, partitions: list[int], model_record: ArrayRecord) -> dict[int, ArrayRecord]:
            records = super().models_sent(partitions, model_record)
            sent.append({p: record_vector(r).clone() for p, r in records.items()})
            servers.append(self)
            return records

        def run_round(self, round_number, nodes):  # type: ignore[no-untyped-def]
            record = super().run_round(round_number, nodes)
            global_models.append(self.global_vector.clone())
            return record

    run_dir = run(parse_scenario({**SCENARIO, "output": {**SCENARIO["output"], "dir": str(tmp_path)}}), Recording)
    return run_dir, servers[0], sent, global_models


def run(scenario: Scenario, server: type[FederationServer] = FederationServer) -> RunDirectory:
    """A run directory as ``fedsec run`` leaves it, from the real server and client apps over a LocalGrid."""
    run_dir = RunDirectory.create(Path(scenario.output.dir), scenario.name)
    write_atomic(run_dir.path / SCENARIO_FILE, to_yaml(scenario))
    run_locally(scenario, run_dir, server)
    return run_dir


def state_differences(model: torch.nn.Module, vectors: list[torch.Tensor]) -> list[tuple[str, float]]:
    """State entries (name, largest difference) in which the models given as ``vectors`` differ."""
    states = []
    for vector in vectors:
        load_vector(model, vector)
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    return [(name, float((s[name] - states[0][name]).abs().max())) for s in states[1:] for name in s
            if not torch.equal(s[name], states[0][name])]


def test_each_client_receives_a_copy_that_traces_to_it(tmp_path: Path) -> None:
    run_dir, server, sent, global_models = fingerprinted_run(tmp_path)
    owner, model = server.owner, server.model
    assert owner is not None and owner.fingerprints is not None
    assert len(sent) == 2 and all(len(copies) == 3 for copies in sent)
    layer = owner.fingerprints.layer
    for round_number, copies in enumerate(sent, start=1):
        for partition, vector in copies.items():
            load_vector(model, vector)
            trace = owner.trace(model)
            assert trace.client == partition and trace.ber(partition) == 0.0
            # The owner embeds after aggregation: round 1 sends the initial model, later rounds a marked one.
            assert owner.verify(model).verified == (round_number > 1)  # the fingerprint leaves the mark
        changed = {name for name, value in state_differences(model, list(copies.values()))}
        assert changed == {layer}  # the copies differ in the fingerprinted weight only
    for vector in global_models:  # updates are taken against the copy sent: no fingerprint accumulates
        load_vector(model, vector)
        assert owner.trace(model).client is None

    cli = CliRunner()
    nobody = cli.invoke(app, ["trace", "--run", str(run_dir.path)])
    assert nobody.exit_code == 1 and nobody.output.startswith("nobody:"), nobody.output
    partition, vector = next(iter(sent[-1].items()))
    load_vector(model, vector)
    leaked = tmp_path / "leaked.pt"
    torch.save({"model": "cnn", "dataset": "digits", "state_dict": model.state_dict()}, leaked)
    named = cli.invoke(app, ["trace", "--run", str(run_dir.path), "--model", str(leaked)])
    assert named.exit_code == 0 and named.output.startswith(f"client {partition}: 64/64"), named.output


def test_a_run_without_fingerprints_cannot_be_traced(tmp_path: Path) -> None:
    scenario = {**SCENARIO, "rounds": 1,
                "watermark": {k: v for k, v in SCENARIO["watermark"].items() if k != "fingerprints"},
                "output": {"plots": False, "dir": str(tmp_path)}}
    run_dir = run(parse_scenario(scenario))
    assert (run_dir.path / MODEL_FILE).exists()
    refused = CliRunner().invoke(app, ["trace", "--run", str(run_dir.path)])
    assert refused.exit_code == 2 and "no watermark.fingerprints section" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
