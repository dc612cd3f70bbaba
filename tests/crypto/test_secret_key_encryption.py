"""Key holders encrypt with the secret key: ciphertexts the public context adds and the key set
decrypts, with less noise than public-key encryption; a holder of another key set is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tenseal as ts

from fedsec.crypto.config import EncryptionConfig
from fedsec.crypto.context import Needs, ckks_parameters
from fedsec.crypto.key_authority import KeyAuthority, load_secret_context

PARAMS = ckks_parameters(EncryptionConfig(mode="ckks"), Needs(depth=0, rotations=False))


def max_error(context: ts.Context, public: ts.Context, values: np.ndarray, authority: KeyAuthority) -> float:
    """Largest error of decrypting (by the authority's context) the server's sum of two encryptions."""
    blobs = [ts.ckks_vector(context, values.tolist()).serialize() for _ in range(2)]
    total = ts.ckks_vector_from(public, blobs[0]) + ts.ckks_vector_from(public, blobs[1])
    decrypted = ts.ckks_vector_from(authority._context, total.serialize()).decrypt()
    return float(np.abs(np.asarray(decrypted) - 2 * values).max())


def test_a_key_holder_encrypts_with_the_secret_key(tmp_path: Path) -> None:
    authority = KeyAuthority(PARAMS, tmp_path, model_size=PARAMS.slots)
    holder = load_secret_context(str(authority.secret_context_file), authority.fingerprint)
    with pytest.raises(ValueError, match="symmetric"):
        holder.has_public_key()  # TenSEAL's symmetric mode: the public key plays no part
    values = np.random.default_rng(0).normal(0, 0.05, PARAMS.slots)
    public = authority.public_context()
    secret_key_error = max_error(holder, public, values, authority)
    public_key_error = max_error(authority._context, public, values, authority)
    assert secret_key_error < 1e-7
    assert public_key_error > 3 * secret_key_error
    roundtrip = ts.ckks_vector_from(holder, ts.ckks_vector(holder, values.tolist()).serialize()).decrypt()
    assert np.abs(np.asarray(roundtrip) - values).max() < 1e-7


def test_another_key_set_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first = KeyAuthority(PARAMS, tmp_path / "a", model_size=PARAMS.slots)
    second = KeyAuthority(PARAMS, tmp_path / "b", model_size=PARAMS.slots)
    with pytest.raises(ValueError, match="not the run's key set"):
        load_secret_context(str(second.secret_context_file), first.fingerprint)
