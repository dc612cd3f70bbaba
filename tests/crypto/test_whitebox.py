"""White-box watermark under CKKS: the encrypted steps reach the mirror's verdict and layer, and the
embedder (no secret key) gets nothing decrypted but detector outputs."""

from __future__ import annotations

import json

import pytest
import tenseal as ts
import torch

from fedsec.crypto.config import EncryptionConfig
from fedsec.crypto.context import ckks_parameters
from fedsec.crypto.key_authority import EMBEDDER, DecryptionRefused, KeyAuthority
from fedsec.crypto.whitebox import (
    STEP_NEEDS,
    Detector,
    EncryptedEmbedder,
    MirrorEmbedder,
    embed_layer,
)

LAYER, BITS, LR, REACH, MARGIN = 24, 8, 2.0, 0.15, 0.1
CKKS_NOISE = 3e-3


@pytest.fixture(scope="module")
def deep_authority(tmp_path_factory: pytest.TempPathFactory) -> KeyAuthority:
    # A depth-3 chain that fits N = 8192 (a 2^33 scale keeps the test fast).
    config = EncryptionConfig(mode="ckks", poly_modulus_degree=8192,
                              coeff_mod_bit_sizes=[50, 33, 33, 33, 50], global_scale_bits=33)
    return KeyAuthority(ckks_parameters(config, STEP_NEEDS), tmp_path_factory.mktemp("run"), model_size=10_000)


def test_encrypted_embedding_matches_the_mirror(deep_authority: KeyAuthority) -> None:
    detector = Detector.random(BITS, LAYER, torch.Generator().manual_seed(1))
    layer = torch.randn(LAYER, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.2
    mirror = MirrorEmbedder(detector, LR, REACH)
    assert not detector.correct(mirror.outputs(layer)).all()
    plain_layer, plain_steps, plain_outputs = embed_layer(mirror, detector, layer, 20, 1, MARGIN)
    encrypted = EncryptedEmbedder(detector, LR, REACH, deep_authority.grant(EMBEDDER, "test"))
    start = ts.ckks_vector(deep_authority.public_context(), layer.tolist())
    log_path = deep_authority.log_path
    lines_before = len(log_path.read_text().splitlines()) if log_path.exists() else 0
    cipher_layer, cipher_steps, cipher_outputs = embed_layer(encrypted, detector, start, 20, 1, MARGIN)
    assert 0 < plain_steps == cipher_steps < 20
    assert detector.correct(plain_outputs).all() and detector.correct(cipher_outputs).all()
    # CKKS noise at scale 2^33 after 4 steps and their refreshes, measured over 75 fresh key sets:
    # outputs within 9e-4, the layer within 1.5e-3 of the mirror (a 1e-3 bound failed 1 run in 5).
    assert (plain_outputs - cipher_outputs).abs().max().item() < CKKS_NOISE
    (values,) = deep_authority.decrypt([cipher_layer], "test", "compare with the mirror", "owner")
    assert (plain_layer - torch.from_numpy(values)).abs().max().item() < CKKS_NOISE
    log = [json.loads(line) for line in log_path.read_text().splitlines()[lines_before:]]
    decryptions = [e for e in log if e["requester"] == EMBEDDER and e["action"] == "decrypt"]
    assert [e["values"] for e in decryptions] == [BITS] * (cipher_steps + 1)  # one check per step
    assert sum(e["action"] == "refresh" for e in log) == 2 * cipher_steps


def test_embedder_cannot_decrypt_the_layer(deep_authority: KeyAuthority) -> None:
    model_sized = ts.ckks_vector(deep_authority.public_context(), [0.1] * 4096)
    with pytest.raises(DecryptionRefused, match="watermark-embedder"):
        deep_authority.decrypt([model_sized], "target layer", "test", EMBEDDER)
    last = json.loads(deep_authority.log_path.read_text().splitlines()[-1])
    assert last["refused"] and last["requester"] == EMBEDDER
