"""White-box watermark under CKKS: the encrypted steps reach the mirror's verdict and layer."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from fedsec.crypto.config import EncryptionConfig
from fedsec.crypto.context import ckks_parameters
from fedsec.crypto.key_authority import KeyAuthority
from fedsec.crypto.whitebox import (
    STEP_NEEDS,
    Detector,
    MirrorEmbedder,
    embed_and_verify,
)

LAYER, BITS, LR, STEPS = 24, 8, 0.5, 4


def test_encrypted_embedding_matches_the_mirror(tmp_path: Path) -> None:
    # A depth-3 chain that fits N = 8192 (a smaller scale than the default 2^40 keeps the test fast).
    config = EncryptionConfig(mode="ckks", poly_modulus_degree=8192,
                              coeff_mod_bit_sizes=[50, 33, 33, 33, 50], global_scale_bits=33)
    authority = KeyAuthority(ckks_parameters(config, STEP_NEEDS), tmp_path, model_size=10_000)
    detector = Detector.random(BITS, LAYER, seed=1)
    layer = torch.randn(LAYER, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.2
    before = detector.verdict(MirrorEmbedder(detector, LR).outputs(layer))
    mirror_layer, mirror = embed_and_verify(layer, detector, LR, STEPS)
    encrypted_layer, encrypted = embed_and_verify(layer, detector, LR, STEPS, authority)
    assert before["wdr"] < 1.0
    assert mirror == encrypted == {"wdr": 1.0, "ber": 0.0}
    assert (mirror_layer - encrypted_layer).abs().max().item() < 1e-4
    log = [json.loads(line) for line in authority.log_path.read_text().splitlines()]
    server_decryptions = [e for e in log if e["requester"] == "server" and e["action"] == "decrypt"]
    assert [e["values"] for e in server_decryptions] == [BITS]  # only the detector outputs
    assert sum(e["action"] == "refresh" for e in log) == 2 * STEPS
