"""Gaussian noise on the encrypted aggregate: the plaintext noise vector is added to the ciphertexts."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fedsec.crypto.defenses.base import ScalarBatch, he_stage


@he_stage("dp-noise")
def dp_noise(batch: ScalarBatch, params: Any, name: str) -> ScalarBatch:
    """N(0, std^2 I) on the aggregate, as fedsec.defenses.dp_noise (same generator draws)."""
    std = params.sigma
    if params.relative:
        bound = batch.info.get("norm-clipping.bound")
        if bound is None:
            raise ValueError("dp-noise with relative: true needs norm-clipping before it")
        std *= bound
    if batch.coefficients is None:
        batch = replace(batch, coefficients=batch.mean_coefficients())
    return replace(batch.with_noise(std), info={**batch.info, f"{name}.std": std})
