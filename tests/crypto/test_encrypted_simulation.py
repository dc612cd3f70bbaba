"""Encrypted FedAvg (and Multi-Krum) in a Flower simulation: same global models as the plaintext run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fedsec.crypto.key_authority import DECRYPTIONS_FILE
from fedsec.fl import simulation
from fedsec.fl.server import FederationServer
from fedsec.results import RunDirectory, read_jsonl
from fedsec.scenario import parse_scenario

SMALL = {
    "name": "small-he",
    "seed": 5,
    "rounds": 3,
    "data": {"dataset": "digits", "num_clients": 5, "partitioner": {"name": "dirichlet", "alpha": 1.0}},
    "model": {"name": "mlp"},
    "client": {"local_epochs": 1, "batch_size": 16, "lr": 0.1},
    "sampling": {"clients_per_round": 4},
    "resources": {"device": "cpu"},
    "output": {"plots": False, "save_model": False},
}


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **changes: object) -> tuple[RunDirectory, list[torch.Tensor]]:
    """Run a small scenario; the run directory and the global model after every round."""
    models: list[torch.Tensor] = []

    class Recording(FederationServer):
        def run_round(self, round_number, nodes):  # type: ignore[no-untyped-def]
            record = super().run_round(round_number, nodes)
            models.append(self.global_vector.clone())
            return record

    monkeypatch.setattr(simulation, "FederationServer", Recording)
    scenario = parse_scenario({**SMALL, **changes, "output": {**SMALL["output"], "dir": str(tmp_path)}})
    run_dir = RunDirectory.create(tmp_path, scenario.name)
    simulation.simulate(scenario, run_dir, show_progress=False)
    return run_dir, models


@pytest.mark.parametrize("defenses", [[], [{"name": "norm-clipping"}, {"name": "multi-krum", "m": 3}]], ids=["fedavg", "clip-multi-krum"])
def test_encrypted_run_matches_plaintext(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, defenses: list) -> None:
    _, plain = run(tmp_path / "plain", monkeypatch, defenses=defenses)
    run_dir, encrypted = run(tmp_path / "ckks", monkeypatch, defenses=defenses, encryption={"mode": "ckks"})
    assert len(plain) == len(encrypted) == 3
    for p, e in zip(plain, encrypted, strict=True):
        assert (p - e).abs().max().item() <= 1e-4
    rounds = run_dir.rounds()
    for record in rounds:
        assert record["encrypt_s"] > 0 and record["bytes_per_param"] > 0
    log = read_jsonl(run_dir.file(DECRYPTIONS_FILE))
    server = [entry for entry in log if entry["requester"] == "server"]
    assert all(entry["values"] < encrypted[0].numel() and not entry["refused"] for entry in server)
    assert bool(server) == bool(defenses)  # FedAvg decrypts nothing for the server
    assert sum(entry["requester"] == "evaluator" for entry in log) == 3
    keys = run_dir.path / "keys"
    assert keys.stat().st_mode & 0o777 == 0o700
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in keys.iterdir())
    assert json.loads(run_dir.file("summary.json").read_text())["ma"] > 0.5
