"""A small CKKS key authority shared by the crypto tests (N = 8192, depth 1, Galois keys)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsec.crypto.config import EncryptionConfig
from fedsec.crypto.context import Needs, ckks_parameters
from fedsec.crypto.key_authority import KeyAuthority

MODEL_SIZE = 5000


@pytest.fixture(scope="session")
def authority(tmp_path_factory: pytest.TempPathFactory) -> KeyAuthority:
    params = ckks_parameters(EncryptionConfig(mode="ckks"), Needs(depth=1, rotations=True))
    return KeyAuthority(params, Path(tmp_path_factory.mktemp("run")), model_size=MODEL_SIZE)
