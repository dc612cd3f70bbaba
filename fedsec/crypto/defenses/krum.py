"""Krum and Multi-Krum on ciphertexts: the pairwise distances come from the decrypted Gram matrix."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from fedsec.crypto.defenses.base import ScalarBatch, he_stage
from fedsec.defenses._math import krum_scores


def distances_from_gram(gram: Tensor) -> Tensor:
    """Squared Euclidean distances (n, n) from a Gram matrix: ``|a|^2 + |b|^2 - 2 a.b``."""
    sq = gram.diagonal()
    dist = (sq.unsqueeze(0) + sq.unsqueeze(1) - 2.0 * gram).clamp_min(0.0)
    return ((dist + dist.T) / 2.0).fill_diagonal_(0.0)


def _krum(batch: ScalarBatch, params: Any, name: str, keep_count: int | None) -> ScalarBatch:
    index = batch.accepted.nonzero().squeeze(1)
    if index.numel() == 0:
        return replace(batch, coefficients=torch.zeros_like(batch.weights))
    scores = krum_scores(distances_from_gram(batch.gram(index)), params.f)
    m = 1 if keep_count is None else keep_count
    best = index[scores.topk(m, largest=False).indices]
    accepted = torch.zeros_like(batch.accepted).index_fill_(0, best, True)
    batch = replace(batch, accepted=accepted).with_score(name, index, scores)
    if keep_count is None:  # Krum: the chosen row itself, example counts ignored
        coefficients = torch.zeros_like(batch.weights).index_fill_(0, best, 1.0)
        return replace(batch, coefficients=coefficients)
    return replace(batch, coefficients=batch.mean_coefficients(), info={**batch.info, f"{name}.kept": float(m)})


@he_stage("krum")
def krum(batch: ScalarBatch, params: Any, name: str) -> ScalarBatch:
    """Keep the row with the lowest Krum score, as fedsec.defenses.krum."""
    return _krum(batch, params, name, None)


@he_stage("multi-krum")
def multi_krum(batch: ScalarBatch, params: Any, name: str) -> ScalarBatch:
    """Keep the m rows with the lowest Krum scores; example-weighted mean, as fedsec.defenses.multi_krum."""
    return _krum(batch, params, name, params.kept(int(batch.accepted.sum())))
