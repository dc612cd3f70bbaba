"""Defenses on ciphertexts decide as the plaintext stages on the same updates."""

from __future__ import annotations

import pytest
import torch

from fedsec.crypto.aggregation import encrypted_weighted_sum
from fedsec.crypto.key_authority import KeyAuthority
from fedsec.crypto.packing import decrypt_vector, encrypt_vector
from fedsec.crypto.scalars import EncryptedScalars
from fedsec.defenses import DEFENSES, BelowMinimum, UpdateBatch, build_pipeline, run_scalar_pipeline
from tests.crypto.conftest import MODEL_SIZE

ENCRYPTABLE = [name for name in DEFENSES.names() if DEFENSES.get(name)().encryptable]


def _updates(n: int = 7, outliers: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    base = torch.randn(MODEL_SIZE, generator=g) * 0.01
    updates = base + 0.01 * torch.randn(n, MODEL_SIZE, generator=g)
    updates[:outliers] = updates[:outliers] * -4.0 + 0.05  # far from the honest rows, larger norms
    weights = torch.randint(20, 200, (n,), generator=g).float()
    return updates, weights


def _run_both(authority: KeyAuthority, specs: list[dict]) -> tuple[UpdateBatch, torch.Tensor, torch.Tensor]:
    """Plaintext pipeline result, encrypted accepted mask and decrypted encrypted aggregate."""
    updates, weights = _updates()
    pipeline = build_pipeline(specs)
    plain = pipeline(UpdateBatch.of(updates, weights, generator=torch.Generator().manual_seed(1)))
    public = authority.public_context()
    slots = authority.params.slots
    encrypted = [encrypt_vector(public, row, slots) for row in updates]

    def decrypt(cts, what):
        return authority.decrypt(cts, what, why="test defense", requester="server")

    decided = run_scalar_pipeline(
        pipeline.stages, EncryptedScalars(encrypted, decrypt), weights, MODEL_SIZE,
        generator=torch.Generator().manual_seed(1),
    )
    chunks = encrypted_weighted_sum(encrypted, decided.final_coefficients().tolist())
    aggregate = decrypt_vector(chunks, authority._context)
    if decided.noise is not None:
        aggregate = aggregate + decided.noise
    return plain, decided.accepted, aggregate


@pytest.mark.parametrize("specs", [
    [{"name": "krum", "f": 2}],
    [{"name": "multi-krum", "f": 2}],
    [{"name": "multi-krum", "f": 1, "m": 3}],
    [{"name": "norm-clipping"}],
    [{"name": "norm-clipping", "bound": 0.5}, {"name": "multi-krum", "f": 2}, {"name": "dp-noise", "sigma": 0.001}],
    [{"name": "flame", "distance": "updates"}],
])
def test_encrypted_stages_match_plaintext(authority: KeyAuthority, specs: list[dict]) -> None:
    plain, accepted, aggregate = _run_both(authority, specs)
    assert torch.equal(accepted, plain.accepted)
    assert (aggregate - plain.aggregate).abs().max().item() <= 1e-4


def test_krum_rejects_the_outliers(authority: KeyAuthority) -> None:
    _, accepted, _ = _run_both(authority, [{"name": "multi-krum", "f": 2}])
    assert not accepted[:2].any() and accepted[2:].all()


@pytest.mark.parametrize("name", ENCRYPTABLE)
def test_encrypted_stage_runs_at_its_minimum_and_skips_below(authority: KeyAuthority, name: str) -> None:
    params = {"f": 1} if "f" in DEFENSES.get(name).Params.model_fields else {}
    stage = DEFENSES.get(name)(**params)
    m = stage.minimum_rows()
    public, slots = authority.public_context(), authority.params.slots
    global_chunks = encrypt_vector(public, torch.ones(MODEL_SIZE), slots)
    decryptions: list[str] = []

    def decrypt(cts, what):
        decryptions.append(what)
        return authority.decrypt(cts, what, why="test defense", requester="server")

    def decide(n: int):
        updates, weights = _updates(n, outliers=0)
        scalars = EncryptedScalars([encrypt_vector(public, row, slots) for row in updates], decrypt, global_chunks)
        return run_scalar_pipeline([stage], scalars, weights, MODEL_SIZE, generator=torch.Generator().manual_seed(1))

    decided = decide(m)
    assert decided.final_coefficients().isfinite().all() and decided.accepted.any()
    if m == 1:
        return
    decryptions.clear()
    with pytest.raises(BelowMinimum, match=rf"{name}\(.*\) needs at least {m} accepted updates, got {m - 1}"):
        decide(m - 1)
    assert not decryptions  # nothing was decrypted for a round that is skipped
