"""FLAME on ciphertexts: cosine distances from decrypted inner products, clipping, plaintext noise."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from fedsec.crypto.defenses.base import ScalarBatch, he_stage
from fedsec.defenses._math import TINY, clip_factors
from fedsec.defenses.flame import Flame


@he_stage("flame")
def flame(batch: ScalarBatch, params: Any, name: str) -> ScalarBatch:
    """Majority HDBSCAN cluster of cosine distances, clip to the median norm, mean, noise
    (fedsec.defenses.flame, whose clustering it calls). Local models ``w + x_i`` need the
    inner products with the encrypted global model."""
    index = batch.accepted.nonzero().squeeze(1)
    if index.numel() == 0:
        return replace(batch, coefficients=torch.zeros_like(batch.weights))
    gram = batch.gram(index)
    if params.distance == "models":
        s = batch.scale[index]
        products = batch.scalars.global_products()
        with_global = products[index] * s
        gram = gram + with_global.unsqueeze(0) + with_global.unsqueeze(1) + products[-1]
    inv = gram.diagonal().clamp_min(0.0).sqrt().clamp_min(TINY).reciprocal()
    cos = (gram * inv.unsqueeze(0) * inv.unsqueeze(1)).clamp(-1.0, 1.0)
    distance = (1.0 - (cos + cos.T) / 2.0).clamp_min(0.0).fill_diagonal_(0.0)
    score = distance.median(dim=1).values
    keep, clustered = Flame._majority_cluster(distance)
    norms = batch.norms(index)
    bound = norms.median()
    coefficients = torch.zeros_like(batch.weights)
    coefficients[index] = keep * clip_factors(norms, bound) / keep.sum().clamp_min(1)
    accepted = torch.zeros_like(batch.accepted)
    accepted[index] = keep
    std = params.noise_lambda * float(bound)
    info = {**batch.info, f"{name}.clip_bound": float(bound), f"{name}.std": std,
            f"{name}.no_cluster": float(not clustered)}
    batch = replace(batch, accepted=accepted, coefficients=coefficients, info=info).with_score(name, index, score)
    return batch.with_noise(std) if params.noise_lambda > 0 else batch
