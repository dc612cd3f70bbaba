"""Key roles: the server's context is public only; every decryption is logged; the server gets scalars only."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import tenseal as ts
import torch

from fedsec.crypto.config import EncryptionConfig
from fedsec.crypto.context import Needs, ckks_parameters
from fedsec.crypto.key_authority import DecryptionRefused, KeyAuthority
from fedsec.crypto.packing import (
    chunk_bounds,
    decrypt_vector,
    deserialize_chunks,
    encrypt_vector,
    serialize_chunks,
)
from fedsec.crypto.scalars import EncryptedScalars, inner_product
from fedsec.defenses import (
    DEFENSES,
    Decision,
    Defense,
    Kind,
    Scalar,
    ScalarBatch,
    ScalarSource,
    UpdateBatch,
    encrypted_defense_problem,
    run_scalar_pipeline,
)
from fedsec.defenses.base import register
from tests.crypto.conftest import MODEL_SIZE


def test_server_context_is_public_only(authority: KeyAuthority) -> None:
    public = authority.public_context()
    assert not public.is_private() and not public.has_secret_key()
    restored = ts.context_from(authority.public_context_bytes())
    assert not restored.has_secret_key()
    ciphertext = ts.ckks_vector(public, [1.0, 2.0])
    with pytest.raises(ValueError, match="secret"):
        ciphertext.decrypt()


def test_secret_context_file_is_owner_only(authority: KeyAuthority) -> None:
    assert authority.secret_context_file.stat().st_mode & 0o777 == 0o600
    assert authority.secret_context_file.parent.stat().st_mode & 0o777 == 0o700
    assert ts.context_from(authority.secret_context_file.read_bytes()).has_secret_key()


def test_every_decryption_is_logged(authority: KeyAuthority) -> None:
    public = authority.public_context()
    x = encrypt_vector(public, torch.arange(10.0), authority.params.slots)
    value = authority.decrypt([inner_product(x, x)], "squared norm", "a test", requester="server")
    assert value[0][0] == pytest.approx(285.0, abs=1e-4)
    last = json.loads(authority.log_path.read_text().splitlines()[-1])
    assert {k: last[k] for k in ("action", "what", "why", "requester", "ciphertexts", "values", "refused")} == {
        "action": "decrypt", "what": "squared norm", "why": "a test", "requester": "server",
        "ciphertexts": 1, "values": 1, "refused": False,
    }


@pytest.mark.parametrize("size", [MODEL_SIZE, 2000])
def test_server_cannot_decrypt_vectors(authority: KeyAuthority, size: int) -> None:
    chunks = encrypt_vector(authority.public_context(), torch.ones(size), authority.params.slots)
    with pytest.raises(DecryptionRefused):
        authority.decrypt(chunks, "the global model", "curiosity", requester="server")
    last = json.loads(authority.log_path.read_text().splitlines()[-1])
    assert last["refused"] and last["values"] == size
    assert np.allclose(np.concatenate(authority.decrypt(chunks, "model", "evaluation", "evaluator")), 1.0, atol=1e-6)
    assert not any(chunk.context().is_private() for chunk in chunks)  # still the holder's public context


def test_packing_round_trip(authority: KeyAuthority) -> None:
    vector = torch.randn(MODEL_SIZE, generator=torch.Generator().manual_seed(0))
    slots = authority.params.slots
    assert chunk_bounds(10, 4, breaks=[3]) == [(0, 3), (3, 7), (7, 10)]
    blobs = serialize_chunks(encrypt_vector(authority.public_context(), vector, slots, breaks=[100]))
    assert len(blobs) == 3
    back = decrypt_vector(deserialize_chunks(authority.public_context(), blobs), authority._context)
    assert (back - vector).abs().max().item() < 1e-6


def test_chain_is_the_shortest_that_fits() -> None:
    auto = EncryptionConfig(mode="ckks")
    fedavg = ckks_parameters(auto, Needs(depth=0, rotations=False))
    assert fedavg.coeff_mod_bit_sizes == (60, 60) and fedavg.poly_modulus_degree == 8192 and not fedavg.galois_keys
    weighted = ckks_parameters(auto, Needs(depth=1, rotations=True))
    assert weighted.coeff_mod_bit_sizes == (60, 40, 60) and weighted.poly_modulus_degree == 8192 and weighted.galois_keys
    deep = ckks_parameters(auto, Needs(depth=4, rotations=True))
    assert deep.coeff_mod_bit_sizes == (60, 40, 40, 40, 40, 60) and deep.poly_modulus_degree == 16384
    with pytest.raises(ValueError, match="allows depth 1"):
        ckks_parameters(EncryptionConfig(mode="ckks", coeff_mod_bit_sizes=[60, 40, 60]), Needs(depth=2, rotations=False))


def test_a_defense_is_encryptable_exactly_when_it_decides_on_scalars() -> None:
    for name in DEFENSES.names():
        cls = DEFENSES.get(name)
        assert cls().encryptable == (cls.on_scalars is not Defense.on_scalars), name
        assert (encrypted_defense_problem(0, name, "ckks") is None) == cls().encryptable, name


def test_a_new_defense_with_a_scalar_path_runs_on_ciphertexts_with_no_other_registration(
    authority: KeyAuthority, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(DEFENSES, "_entries", dict(DEFENSES._entries))  # the registration is undone after

    @register("test-small-norms")
    class SmallNorms(Defense):
        """Rejects rows of norm above 1."""

        kind = Kind.SCREEN

        def needs(self) -> frozenset[Scalar]:
            return frozenset({Scalar.NORMS})

        def decide(self, batch: UpdateBatch) -> Decision:
            return Decision(keep=batch.updates.norm(dim=1) <= 1.0)

        def on_scalars(self, batch: ScalarBatch) -> ScalarBatch:
            index = batch.accepted.nonzero().squeeze(1)
            accepted = batch.accepted.clone()
            accepted[index] = batch.norms(index) <= 1.0
            return replace(batch, accepted=accepted)

    assert SmallNorms().encryptable and encrypted_defense_problem(1, "test-small-norms", "ckks") is None
    assert "test-small-norms" in encrypted_defense_problem(0, "median", "ckks")

    public, slots = authority.public_context(), authority.params.slots
    rows = torch.zeros(3, MODEL_SIZE)
    rows[:, 0] = torch.tensor([0.5, 2.0, 0.9])
    whats: list[str] = []

    def decrypt(cts, what):
        whats.append(what)
        return authority.decrypt(cts, what, why="test defense", requester="server")

    scalars = EncryptedScalars([encrypt_vector(public, row, slots) for row in rows], decrypt)
    assert isinstance(scalars, ScalarSource)
    decided = run_scalar_pipeline([SmallNorms()], scalars, torch.ones(3), MODEL_SIZE)
    assert decided.accepted.tolist() == [True, False, True]
    assert whats == ["squared norms of client updates"]  # only what needs() declared
