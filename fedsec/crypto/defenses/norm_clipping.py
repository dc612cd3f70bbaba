"""Norm clipping on ciphertexts: squared norms decrypted, rows rescaled by plaintext factors."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fedsec.crypto.defenses.base import ScalarBatch, he_stage
from fedsec.defenses._math import clip_factors


@he_stage("norm-clipping")
def norm_clipping(batch: ScalarBatch, params: Any, name: str) -> ScalarBatch:
    """Scale accepted rows to norm <= bound (fixed, or the median norm), as fedsec.defenses.norm_clipping."""
    index = batch.accepted.nonzero().squeeze(1)
    if index.numel() == 0:
        return batch
    norms = batch.norms(index)
    bound = norms.median() if params.bound is None else params.bound
    scale = batch.scale.clone()
    scale[index] *= clip_factors(norms, bound)
    batch = replace(batch, scale=scale, info={**batch.info, f"{name}.bound": float(bound)})
    return batch.with_score(name, index, norms)
