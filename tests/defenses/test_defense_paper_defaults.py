"""FLAME's default is the paper's single HDBSCAN pass; the widened cluster is a named option."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import HDBSCAN

from fedsec.defenses import DEFENSES, DefensePipeline, UpdateBatch


def flame_batch(seed: int = 0, benign: int = 12, bad: int = 3, d: int = 40) -> UpdateBatch:
    """Honest updates spread around one direction plus a tight boosted minority, on a non-zero global model."""
    gen = torch.Generator().manual_seed(seed)
    mu = torch.randn(d, generator=gen)
    honest = mu / mu.norm() + 0.6 * torch.randn(benign, d, generator=gen) / d**0.5
    backdoor = torch.randn(d, generator=gen)
    boosted = 5.0 * (backdoor / backdoor.norm() + 0.01 * torch.randn(bad, d, generator=gen))
    return UpdateBatch.of(torch.cat([honest, boosted]), global_vector=0.1 * torch.randn(d, generator=gen),
                          generator=torch.Generator().manual_seed(1))


def paper_cluster(batch: UpdateBatch) -> np.ndarray:
    """Nguyen et al.'s filter written out: one HDBSCAN (min_cluster_size n/2 + 1) on the cosine
    distances of the local models, its largest cluster."""
    models = (batch.updates + batch.global_vector).double().numpy()
    unit = models / np.linalg.norm(models, axis=1, keepdims=True)
    distance = np.clip(1.0 - unit @ unit.T, 0.0, None)
    np.fill_diagonal(distance, 0.0)
    n = len(models)
    labels = HDBSCAN(min_cluster_size=n // 2 + 1, min_samples=1, metric="precomputed",
                     allow_single_cluster=True, copy=True).fit_predict(distance)
    return labels == np.bincount(labels[labels >= 0]).argmax()


def test_flame_default_keeps_exactly_the_single_hdbscan_cluster() -> None:
    for seed in range(4):
        batch = flame_batch(seed)
        out = DefensePipeline([DEFENSES.get("flame")(noise_lambda=0.0)])(batch)
        assert out.accepted.tolist() == paper_cluster(batch).tolist()
        assert not out.accepted[-3:].any()


def test_flame_widened_keeps_a_superset_and_is_named_in_the_label() -> None:
    widened_more = 0
    for seed in range(4):
        batch = flame_batch(seed)
        single = DefensePipeline([DEFENSES.get("flame")()])(batch).accepted
        stage = DEFENSES.get("flame")(membership="widened")
        widened = DefensePipeline([stage])(batch).accepted
        assert bool((widened >= single).all()) and not widened[-3:].any()
        widened_more += int(widened.sum() > single.sum())
    assert widened_more > 0  # the second pass admits honest rows the paper's pass leaves out
    assert "membership='widened'" in stage.label()
    assert "membership='hdbscan'" in DEFENSES.get("flame")().label()
