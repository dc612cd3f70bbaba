"""Krum, Multi-Krum, Bulyan, median and trimmed mean agree with Flower's reference functions.

Conventions shared with Flower (so no translation is needed): ``f`` is Flower's
``num_malicious``, Multi-Krum's ``m`` its ``to_keep`` (Krum is ``to_keep=0``), ``beta``
its ``proportiontocut``; example counts matter only in Multi-Krum's final mean.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.server.strategy.aggregate import (
    aggregate_bulyan,
    aggregate_krum,
    aggregate_median,
    aggregate_trimmed_avg,
)

from fedsec.defenses import DefensePipeline, UpdateBatch
from fedsec.defenses.bulyan import Bulyan
from fedsec.defenses.krum import Krum
from fedsec.defenses.median import Median
from fedsec.defenses.multi_krum import MultiKrum
from fedsec.defenses.trimmed_mean import TrimmedMean

LAYERS = [(3, 4), (20,), (2, 2, 5)]  # a model of three tensors, d = 52
D = sum(int(np.prod(shape)) for shape in LAYERS)


def make_inputs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Heterogeneous float32 rows (a few scaled up) and integer example counts."""
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randn(n, D, generator=gen)
    rows[: n // 4] *= 5.0
    counts = torch.randint(10, 500, (n,), generator=gen).to(torch.float32)
    return rows, counts


def to_flower(rows: torch.Tensor, counts: torch.Tensor) -> list[tuple[list[np.ndarray], int]]:
    """Rows as Flower's list of (per-layer ndarrays, num_examples)."""
    results = []
    for row, count in zip(rows.numpy(), counts.tolist(), strict=True):
        layers, start = [], 0
        for shape in LAYERS:
            size = int(np.prod(shape))
            layers.append(row[start : start + size].reshape(shape).copy())
            start += size
        results.append((layers, int(count)))
    return results


def flat(layers: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([layer.ravel() for layer in layers])


def ours(stage: object, rows: torch.Tensor, counts: torch.Tensor) -> np.ndarray:
    batch = DefensePipeline([stage])(UpdateBatch.of(rows, counts))  # type: ignore[list-item]
    assert batch.aggregate is not None
    return batch.aggregate.numpy()


def assert_close(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    assert np.max(np.abs(a - b)) <= 1e-5


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n", [9, 10])
def test_median(n: int, seed: int) -> None:
    rows, counts = make_inputs(n, seed)
    assert_close(ours(Median(), rows, counts), flat(aggregate_median(to_flower(rows, counts))))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("beta", [0.0, 0.1, 0.25, 0.45])
def test_trimmed_mean(beta: float, seed: int) -> None:
    rows, counts = make_inputs(11, seed)
    expected = flat(aggregate_trimmed_avg(to_flower(rows, counts), beta))
    assert_close(ours(TrimmedMean(beta=beta), rows, counts), expected)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("f", [0, 1, 3, 4])
def test_krum(f: int, seed: int) -> None:
    rows, counts = make_inputs(12, seed)
    expected = flat(aggregate_krum(to_flower(rows, counts), num_malicious=f, to_keep=0))
    assert_close(ours(Krum(f=f), rows, counts), expected)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("f", "m"), [(0, 1), (2, 5), (3, None), (4, 12)])
def test_multi_krum(f: int, m: int | None, seed: int) -> None:
    rows, counts = make_inputs(12, seed)
    to_keep = 12 - f if m is None else m
    expected = flat(aggregate_krum(to_flower(rows, counts), num_malicious=f, to_keep=to_keep))
    assert_close(ours(MultiKrum(f=f, m=m), rows, counts), expected)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("n", "f"), [(7, 1), (11, 2), (16, 3), (10, 0)])
def test_bulyan(n: int, f: int, seed: int) -> None:
    rows, counts = make_inputs(n, seed)
    expected = flat(aggregate_bulyan(to_flower(rows, counts), f, aggregate_krum, to_keep=0))
    assert_close(ours(Bulyan(f=f), rows, counts), expected)
