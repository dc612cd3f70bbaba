"""Encrypted FedAvg (and Multi-Krum): same global models as the plaintext run. One encrypted run
is a Flower simulation (the secret key reaches Ray's client workers); the others run the same
server and client apps over a LocalGrid in this process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.local_grid import run_locally

from fedsec.checkpoint import CHECKPOINT_FILE
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
    "resources": {"device": "cpu", "client_actors": 1},
    "output": {"plots": False, "save_model": False},
}


def recording(models: list[torch.Tensor]) -> type[FederationServer]:
    """A server class that appends the global model to ``models`` after every round."""

    class Recording(FederationServer):
        def run_round(self, round_number, nodes):  # type: ignore[no-untyped-def]
            record = super().run_round(round_number, nodes)
            models.append(self.global_vector.clone())
            return record

    return Recording


def run(tmp_path: Path, ray: bool = False, **changes: object) -> tuple[RunDirectory, list[torch.Tensor]]:
    """Run a small scenario over a LocalGrid, or in a Flower simulation when ``ray``; the run
    directory and the global model after every round."""
    models: list[torch.Tensor] = []
    scenario = parse_scenario({**SMALL, **changes, "output": {**SMALL["output"], "dir": str(tmp_path)}})
    run_dir = RunDirectory.create(tmp_path, scenario.name)
    if ray:
        simulation.simulate(scenario, run_dir, show_progress=False, server=recording(models))
    else:
        run_locally(scenario, run_dir, recording(models))
    return run_dir, models


@pytest.fixture(scope="module")
def fedavg_ckks(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunDirectory, list[torch.Tensor]]:
    """The small scenario under CKKS in a Flower simulation, uninterrupted (compared with plaintext
    and with a resumed run)."""
    return run(tmp_path_factory.mktemp("ckks"), ray=True, encryption={"mode": "ckks"})


@pytest.mark.parametrize("defenses", [[], [{"name": "norm-clipping"}, {"name": "multi-krum", "m": 3}]], ids=["fedavg", "clip-multi-krum"])
def test_encrypted_run_matches_plaintext(tmp_path: Path, defenses: list, request: pytest.FixtureRequest) -> None:
    _, plain = run(tmp_path / "plain", defenses=defenses)
    run_dir, encrypted = (run(tmp_path / "ckks", defenses=defenses, encryption={"mode": "ckks"}) if defenses
                          else request.getfixturevalue("fedavg_ckks"))
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


def test_a_round_with_missing_replies_is_renormalised_as_in_plaintext(tmp_path: Path) -> None:
    # FedAvg's chain has no level for a plaintext factor: the key authority refreshes the sum
    # times sent / received coefficients for the server, which sees ciphertexts only.
    faults = {"crash": 0.3}
    _, plain = run(tmp_path / "plain", faults=faults)
    run_dir, encrypted = run(tmp_path / "ckks", faults=faults, encryption={"mode": "ckks"})
    short = [r["round"] for r in run_dir.rounds() if 0 < r["replies"] < r["clients"]]
    assert short, "no round lost a reply: the fault seed no longer exercises renormalisation"
    for p, e in zip(plain, encrypted, strict=True):
        assert (p - e).abs().max().item() <= 1e-4
    refreshes = [e for e in read_jsonl(run_dir.file(DECRYPTIONS_FILE)) if e["action"] == "refresh"]
    assert len(refreshes) == len(short)
    assert all(e["requester"] == "server" and not e["refused"] for e in refreshes)
    assert not [e for e in read_jsonl(run_dir.file(DECRYPTIONS_FILE))
                if e["requester"] == "server" and e["action"] == "decrypt"]


def test_fedcrypt_watermark_on_ciphertexts_matches_the_mirror(tmp_path: Path) -> None:
    bits = 32
    watermark = {"scheme": {"name": "fedcrypt", "bits": bits}, "key": "seeded", "embedding": {"check_every": 1}}
    deep = {"poly_modulus_degree": 8192, "coeff_mod_bit_sizes": [50, 33, 33, 33, 50], "global_scale_bits": 33}
    run_dir, encrypted = run(tmp_path / "ckks", rounds=2, watermark=watermark, encryption={"mode": "ckks", **deep})
    mirror_dir, mirrored = run(tmp_path / "simulated", rounds=2, watermark=watermark, encryption={"mode": "simulated"})
    ckks_rounds, mirror_rounds = run_dir.rounds(), mirror_dir.rounds()
    for ckks, mirror in zip(ckks_rounds, mirror_rounds, strict=True):
        assert ckks["wm_embedded"] == mirror["wm_embedded"] == 1
        assert ckks["wm_wdr"] == mirror["wm_wdr"] == 1.0 and ckks["wm_verified"] == mirror["wm_verified"] == 1
    # CKKS noise (dot products at scale 2^33 carry ~4e-4) may settle a borderline output one check
    # earlier or later; steps then differ by one and the layers by a few 1e-3.
    assert abs(ckks_rounds[0]["wm_steps"] - mirror_rounds[0]["wm_steps"]) <= 1 and ckks_rounds[0]["wm_steps"] > 0
    assert (encrypted[0] - mirrored[0]).abs().max().item() <= 5e-3
    log = read_jsonl(run_dir.file(DECRYPTIONS_FILE))
    embedder = [entry for entry in log if entry["requester"] == "watermark-embedder"]
    assert embedder and all(entry["values"] == bits for entry in embedder if entry["action"] == "decrypt")
    assert not any(entry["requester"] in ("server", "owner") for entry in log)  # nobody else decrypted
    assert not (mirror_dir.path / DECRYPTIONS_FILE).exists() and not (mirror_dir.path / "keys").exists()


def test_black_box_watermark_in_an_encrypted_federation(tmp_path: Path) -> None:
    watermark = {"scheme": {"name": "keyed-labels", "triggers": 20}, "key": "seeded", "owner_samples": 200}
    run_dir, models = run(tmp_path, watermark=watermark, encryption={"mode": "ckks"})
    rounds = run_dir.rounds()
    assert all(record["wm_embedded"] == 1 for record in rounds) and rounds[-1]["wm_verified"] == 1
    log = read_jsonl(run_dir.file(DECRYPTIONS_FILE))
    owner = [entry for entry in log if entry["requester"] == "owner"]
    assert len(owner) == 3 and all(entry["values"] == models[0].numel() for entry in owner)
    assert not any(entry["requester"] == "server" for entry in log)
    metrics = run_dir.file("metrics.jsonl").read_text()
    key = (run_dir.path / "owner" / "key").read_text().strip()
    assert key not in metrics and key not in run_dir.file(DECRYPTIONS_FILE).read_text()


def test_an_interrupted_encrypted_run_resumes_from_ciphertexts(
        tmp_path: Path, fedavg_ckks: tuple[RunDirectory, list[torch.Tensor]]) -> None:
    _, uninterrupted = fedavg_ckks

    class Crash(FederationServer):
        def run_round(self, round_number, nodes):  # type: ignore[no-untyped-def]
            if round_number == 3:
                raise RuntimeError("server crash")
            return super().run_round(round_number, nodes)

    scenario = parse_scenario({**SMALL, "encryption": {"mode": "ckks"}, "output": {**SMALL["output"], "dir": str(tmp_path)}})
    run_dir = RunDirectory.create(tmp_path / "crashed", scenario.name)
    with pytest.raises(RuntimeError, match="server crash"):
        run_locally(scenario, run_dir, Crash)
    checkpoint = torch.load(run_dir.file(CHECKPOINT_FILE), weights_only=True)
    assert checkpoint["round"] == 2 and set(checkpoint["aggregation"]) == {"ciphertexts", "defenses"}  # no plaintext model kept
    keys = (run_dir.path / "keys" / "secret.ctx").read_bytes()
    log_before = run_dir.file(DECRYPTIONS_FILE).read_text()
    resumed: list[torch.Tensor] = []
    run_locally(scenario, run_dir, recording(resumed))
    assert (run_dir.path / "keys" / "secret.ctx").read_bytes() == keys
    assert run_dir.file(DECRYPTIONS_FILE).read_text().startswith(log_before)
    assert [r["round"] for r in run_dir.rounds()] == [1, 2, 3]
    assert len(resumed) == 1 and (resumed[0] - uninterrupted[2]).abs().max().item() <= 1e-4
