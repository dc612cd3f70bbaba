"""Key custody: the authority in its own process, grants bound to a role on its side, no route
from the aggregation server's objects to the secret key or to a model-sized plaintext."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import tenseal as ts
import torch

from fedsec.crypto.config import EncryptionConfig
from fedsec.crypto.context import Needs, ckks_parameters
from fedsec.crypto.custody import KeyCustody, RemoteGrant
from fedsec.crypto.key_authority import (
    DECRYPTIONS_FILE,
    EVALUATOR,
    KEYS_DIR,
    OWNER,
    SECRET_CONTEXT_FILE,
    SERVER,
    DecryptionRefused,
    Grant,
    KeyAuthority,
    KeyMismatch,
)
from fedsec.crypto.packing import encrypt_vector
from fedsec.fl.encrypted_aggregation import EncryptedFederation, grant_budgets, grant_purposes
from fedsec.scenario import parse_scenario

MODEL_SIZE = 6000
PARAMS = ckks_parameters(EncryptionConfig(mode="ckks"), Needs(depth=1, rotations=True))
SCENARIO = parse_scenario({
    "name": "custody", "data": {"dataset": "digits", "num_clients": 5}, "model": {"name": "mlp"},
    "sampling": {"clients_per_round": 4}, "defenses": [{"name": "multi-krum", "m": 3}],
    "encryption": {"mode": "ckks"},
    "watermark": {"scheme": {"name": "keyed-labels", "triggers": 20}, "key": "seeded", "owner_samples": 200},
})


@pytest.fixture()
def custody(tmp_path: Path) -> Iterator[KeyCustody]:
    with KeyCustody(PARAMS, tmp_path, MODEL_SIZE, grant_purposes(SCENARIO), grant_budgets(SCENARIO)) as started:
        yield started


def server_of(custody: KeyCustody) -> EncryptedFederation:
    return EncryptedFederation(SCENARIO, PARAMS, torch.zeros(MODEL_SIZE), custody.public_context,
                               custody.fingerprint, custody.take(SERVER))


def reachable(root: object) -> Iterator[object]:
    """Every object reachable from ``root`` through Python references (attributes, containers,
    closures, bound methods), the routes server code could follow."""
    seen = {id(root)}
    stack = [root]
    while stack:
        current = stack.pop()
        yield current
        for child in gc.get_referents(current):
            if id(child) not in seen and not isinstance(child, type):
                seen.add(id(child))
                stack.append(child)


def test_no_route_from_the_server_to_a_key(custody: KeyCustody) -> None:
    server = server_of(custody)
    found = list(reachable(server))
    contexts = [o for o in found if isinstance(o, ts.Context)]
    assert contexts and not any(c.is_private() or c.has_secret_key() for c in contexts)
    assert not any(isinstance(o, (KeyAuthority, Grant, KeyCustody)) for o in found)
    assert [o.role for o in found if isinstance(o, RemoteGrant)] == [SERVER]
    config = json.dumps(server.train_config([0, 1, 2, 3]))
    assert KEYS_DIR not in config and SECRET_CONTEXT_FILE not in config and custody.fingerprint in config


def test_the_server_grant_refuses_the_model_whole_or_in_slices(custody: KeyCustody) -> None:
    server = server_of(custody)
    grant = server._decryptor
    chunks = encrypt_vector(custody.public_context, torch.arange(float(MODEL_SIZE)), PARAMS.slots)
    with pytest.raises(DecryptionRefused):
        grant.decrypt(chunks, "the global model")
    # A matrix product shrinks a chunk to 1,000 chosen values; the round budget stops the slices.
    budget = grant_budgets(SCENARIO)[SERVER]
    selector = torch.zeros(PARAMS.slots, 10)
    for j in range(10):
        selector[j, j] = 1.0
    obtained = 0
    with pytest.raises(DecryptionRefused, match="budget"):
        for start in range(0, PARAMS.slots, 10):
            (values,) = grant.decrypt([chunks[0].mm(selector.roll(start, 0).tolist())], "a slice")
            obtained += len(values)
    assert 0 < obtained <= budget < MODEL_SIZE
    custody.new_round()
    assert len(grant.decrypt([chunks[0].mm(selector.tolist())], "next round's slice")[0]) == 10


def test_the_server_renormalises_a_sum_without_seeing_it(custody: KeyCustody, tmp_path: Path) -> None:
    server = server_of(custody)
    values = torch.randn(MODEL_SIZE, generator=torch.Generator().manual_seed(1))
    chunks = encrypt_vector(custody.public_context, values, PARAMS.slots)
    refreshed = server._decryptor.refresh(chunks, "a sum with missing replies", 1.25)
    assert all(not ct.context().has_secret_key() for ct in refreshed)
    with pytest.raises(ValueError):
        refreshed[0].decrypt()  # the server's context cannot decrypt what it got back
    owner = custody.take(OWNER)
    back = torch.cat([torch.from_numpy(v) for v in owner.decrypt(refreshed, "check")])
    assert (back - 1.25 * values.double()).abs().max().item() < 1e-5
    (entry,) = [e for e in read_log(tmp_path) if e["action"] == "refresh"]
    assert entry["requester"] == SERVER and not entry["refused"] and entry["values"] == MODEL_SIZE


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / DECRYPTIONS_FILE).read_text().splitlines()]


def test_a_grant_cannot_claim_another_role(custody: KeyCustody, tmp_path: Path) -> None:
    grant = custody.take(SERVER)
    grant.role = EVALUATOR  # the holder's label; the authority keeps its own
    model = encrypt_vector(custody.public_context, torch.ones(MODEL_SIZE), PARAMS.slots)
    with pytest.raises(DecryptionRefused):
        grant.decrypt(model, "the global model")
    owner = custody.take(OWNER)
    assert float(owner.decrypt(model, "the global model")[0][0]) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(KeyError):
        custody.take(OWNER)  # each grant is handed out once
    log = [json.loads(line) for line in (tmp_path / DECRYPTIONS_FILE).read_text().splitlines()]
    assert [(e["requester"], e["refused"]) for e in log] == [(SERVER, True), (OWNER, False)]
    assert all("T" in e["time"] and e["time"].endswith("+00:00") and "." in e["time"] for e in log)


def test_the_secret_key_never_enters_the_callers_process(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import gc, os, torch, tenseal as ts
        from pathlib import Path
        from fedsec.crypto.custody import KeyCustody
        from fedsec.crypto.packing import encrypt_vector
        from tests.crypto.test_custody import PARAMS, SCENARIO, MODEL_SIZE
        from fedsec.fl.encrypted_aggregation import grant_purposes, grant_budgets
        custody = KeyCustody(PARAMS, Path({str(tmp_path)!r}), MODEL_SIZE, grant_purposes(SCENARIO), grant_budgets(SCENARIO))
        model = encrypt_vector(custody.public_context, torch.ones(MODEL_SIZE), PARAMS.slots)
        assert custody.take("evaluator").decrypt(model, "model")[0][0] > 0.99
        pid = custody.pid
        custody.close()
        private = [o for o in gc.get_objects() if isinstance(o, ts.Context) and o.has_secret_key()]
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        print(len(private), alive, custody.pid)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["0", "False", "None"]


def test_kept_keys_must_be_the_runs(tmp_path: Path) -> None:
    for name in "abc":
        (tmp_path / name).mkdir()
    first, other = KeyAuthority(PARAMS, tmp_path / "a", MODEL_SIZE), KeyAuthority(PARAMS, tmp_path / "b", MODEL_SIZE)
    assert first.fingerprint != other.fingerprint
    assert KeyAuthority(PARAMS, tmp_path / "a", MODEL_SIZE, expected_fingerprint=first.fingerprint).fingerprint \
        == first.fingerprint
    with pytest.raises(KeyMismatch, match="not the run's keys"):
        KeyAuthority(PARAMS, tmp_path / "b", MODEL_SIZE, expected_fingerprint=first.fingerprint)
    with pytest.raises(KeyMismatch, match="no keys"):
        KeyAuthority(PARAMS, tmp_path / "c", MODEL_SIZE, expected_fingerprint=first.fingerprint)
    assert not (tmp_path / "c" / KEYS_DIR).exists()  # no new keys made for a resumed run
    secret = tmp_path / "a" / KEYS_DIR / SECRET_CONTEXT_FILE
    secret.write_bytes((tmp_path / "b" / KEYS_DIR / SECRET_CONTEXT_FILE).read_bytes())  # swapped key file
    with pytest.raises(KeyMismatch, match="does not match the fingerprint"):
        KeyAuthority(PARAMS, tmp_path / "a", MODEL_SIZE)
    with pytest.raises(KeyMismatch, match="not the run's keys"):
        KeyCustody(PARAMS, tmp_path / "b", MODEL_SIZE, {SERVER: "test"}, expected_fingerprint=first.fingerprint)
    assert os.listdir(tmp_path / "b" / KEYS_DIR)
