"""PRADA: the alarm on a Jacobian-augmentation stream, none on benign i.i.d. streams, and its
Shapiro-Wilk statistics equal scipy's on the distance set a direct reading of the paper builds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import shapiro

from fedsec.extraction import EXTRACTIONS, Oracle, Prada, PradaParams, build_extraction, queries_until_detection

# δ is set per dataset, as the paper does (MNIST 0.95, GTSRB 0.87 to 0.94); benign digits streams
# stay above 0.9 here and Jacobian streams below 0.85.
PARAMS = PradaParams(delta=0.9)


def benign_stream(victim, seed: int, length: int = 600) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(len(victim.pool), generator=torch.Generator().manual_seed(seed))[:length]
    x = victim.pool[order]
    return x.flatten(1), victim.model(x).argmax(1)


def test_a_jacobian_augmentation_stream_raises_the_alarm_soon_after_the_first_test(victim) -> None:
    spec = EXTRACTIONS.get("jacobian").Params(name="jacobian", budget=800, seed_samples=50, rounds=5, epochs=3)
    oracle = Oracle(victim.model, spec.budget, spec.output)
    build_extraction(spec).steal(oracle, victim.pool, victim.fresh(), torch.Generator().manual_seed(0))
    detected = queries_until_detection(PARAMS, *oracle.stream())
    assert detected is not None and detected <= 300


def test_benign_iid_streams_raise_no_alarm(victim) -> None:
    detections = [queries_until_detection(PARAMS, *benign_stream(victim, seed)) for seed in range(4)]
    assert detections == [None] * 4  # false-positive rate 0 of 4


def reference_distances(x: np.ndarray, classes: list[int]) -> list[list[float]]:
    """The distance set after each query, by the paper's algorithm written with plain loops."""
    growing: dict[int, list[np.ndarray]] = {}
    own: dict[int, list[float]] = {}
    threshold: dict[int, float] = {}
    distances: list[float] = []
    after = []
    for row, c in zip(x, classes, strict=True):
        if c not in growing:
            growing[c], own[c], threshold[c] = [row], [0.0], 0.0
        else:
            d = min(float(np.sqrt(((g - row) ** 2).sum())) for g in growing[c])
            distances.append(d)
            if d > threshold[c]:
                growing[c].append(row)
                own[c].append(d)
                threshold[c] = max(threshold[c], float(np.mean(own[c]) - np.std(own[c])))
        after.append(list(distances))
    return after


@pytest.mark.parametrize("test_every", [1, 10])
def test_statistics_equal_scipy_on_the_reference_distance_set(victim, test_every: int) -> None:
    x, classes = benign_stream(victim, seed=7, length=250)
    params = PradaParams(delta=0.9, test_every=test_every)
    detector = Prada(params)
    for row, c in zip(x, classes.tolist(), strict=True):
        detector.observe(row, c)
    expected = []
    for seen, d in enumerate(reference_distances(x.double().numpy(), classes.tolist()), start=1):
        if len(d) > params.min_distances and seen % test_every == 0:
            d = np.asarray(d)
            kept = d[np.abs(d - d.mean()) <= 3 * d.std()]
            expected.append(shapiro(kept).statistic)
    assert len(detector.statistics) == len(expected) > 10
    np.testing.assert_allclose(detector.statistics, expected, rtol=1e-4)
