"""PRADA (Juuti et al., EuroS&P 2019): detects extraction in one querier's stream of queries.

For each query x of predicted class c, PRADA records the minimum L2 distance from x to the class's
growing set G_c, and adds x to G_c when that distance exceeds the class threshold T_c =
max(T_c, mean − std of G_c's distances). The distances of all classes form the set D; once it
holds enough, PRADA tests it with Shapiro-Wilk (outliers beyond ``outlier_sigma`` standard
deviations left out) and raises the alarm when W < δ: benign queries give distances close to
normal, synthetic attack queries (small steps from earlier ones) do not.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

MAX_STREAMS = 100


class PradaParams(BaseModel):
    """The detector's settings (the scenario's ``extraction.prada``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    delta: float = Field(
        0.95, gt=0, lt=1, description="δ: alarm when the Shapiro-Wilk statistic W of the distance set is below it "
        "(the paper: 0.95 on MNIST, 0.87 to 0.94 on GTSRB).")
    min_distances: int = Field(
        100, ge=3, le=1_000_000, description="The set is tested once it holds more than this many distances "
        "(the paper: 100).")
    outlier_sigma: float = Field(
        3.0, gt=0, description="Distances farther than this many standard deviations from the set's mean are "
        "left out of the test.")
    test_every: int = Field(
        1, ge=1, le=1_000_000, description="Queries between two tests: 1 is the paper's algorithm, the authors' "
        "published code tests every 10.")
    benign_streams: int = Field(
        3, ge=0, le=MAX_STREAMS, description=f"Benign streams for the false-positive rate (at most {MAX_STREAMS}): "
        "the scoring test images in test-set order, then seeded shuffles of them.")


class Prada:
    """PRADA's state for one querier; :meth:`observe` each query in order."""

    def __init__(self, params: PradaParams) -> None:
        self.params = params
        self.growing: dict[int, Tensor] = {}  # class -> (rows, D) buffer, the first `sizes[c]` rows used
        self.sizes: dict[int, int] = {}
        self.growing_distances: dict[int, list[float]] = {}
        self.thresholds: dict[int, float] = {}
        self.distances: list[float] = []
        self.seen = 0
        self.statistics: list[float] = []
        """W of every test, in order."""
        self.tested: list[int] = []
        """The query (1-based) whose arrival each test of :attr:`statistics` follows."""

    def _grow(self, c: int, x: Tensor) -> None:
        rows, size = self.growing[c], self.sizes[c]
        if size == len(rows):
            rows = self.growing[c] = torch.cat([rows, torch.empty_like(rows)])
        rows[size] = x
        self.sizes[c] = size + 1

    def observe(self, x: Tensor, c: int) -> bool:
        """Record query ``x`` (flattened float image) of predicted class ``c``; True when the alarm
        is raised by this query's test."""
        self.seen += 1
        if c not in self.growing:
            self.growing[c], self.sizes[c] = x[None].repeat(8, 1), 1
            self.growing_distances[c], self.thresholds[c] = [0.0], 0.0  # as the authors' code starts a class
        else:
            d_min = float((self.growing[c][: self.sizes[c]] - x).norm(dim=1).min())
            self.distances.append(d_min)
            if d_min > self.thresholds[c]:
                self._grow(c, x)
                self.growing_distances[c].append(d_min)
                own = np.asarray(self.growing_distances[c])
                self.thresholds[c] = max(self.thresholds[c], float(own.mean() - own.std()))
        if len(self.distances) <= self.params.min_distances or self.seen % self.params.test_every:
            return False
        w = shapiro_statistic(np.asarray(self.distances), self.params.outlier_sigma)
        self.statistics.append(w)
        self.tested.append(self.seen)
        return w < self.params.delta


def shapiro_statistic(distances: np.ndarray, outlier_sigma: float) -> float:
    """Shapiro-Wilk W of ``distances`` without those beyond ``outlier_sigma`` standard deviations
    from their mean (1.0 when fewer than 3 remain: nothing to test)."""
    kept = distances[np.abs(distances - distances.mean()) <= outlier_sigma * distances.std()]
    if len(kept) < 3:
        return 1.0
    from scipy.stats import shapiro  # here: scipy.stats costs ~1 s of start-up in every client process

    with warnings.catch_warnings():
        # scipy warns that its p-value is rough above 5,000 values and on a zero range; only W is used
        warnings.simplefilter("ignore")
        return float(shapiro(kept).statistic)


def queries_until_detection(params: PradaParams, x: Tensor, classes: Tensor) -> int | None:
    """Queries of the stream (flattened images ``x`` (Q, D), predicted ``classes`` (Q,)) up to and
    including the first alarm; None when PRADA never raises it."""
    detector = Prada(params)
    for i, (row, c) in enumerate(zip(x, classes.tolist(), strict=True)):
        if detector.observe(row, c):
            return i + 1
    return None


def stream_statistics(params: PradaParams, x: Tensor, classes: Tensor) -> Prada:
    """PRADA after the whole stream (flattened images ``x`` (Q, D), predicted ``classes`` (Q,)),
    never stopping at an alarm: its :attr:`Prada.statistics` and :attr:`Prada.tested` give the
    queries until detection for any δ (:func:`first_alarm`), as W does not depend on δ."""
    detector = Prada(params)
    for row, c in zip(x, classes.tolist(), strict=True):
        detector.observe(row, c)
    return detector


def first_alarm(detector: Prada, delta: float) -> int | None:
    """Queries up to and including the first test with W < ``delta`` in ``detector``'s tests; None
    when there is none (equal to :func:`queries_until_detection` with that δ on the same stream)."""
    return next((q for q, w in zip(detector.tested, detector.statistics, strict=True) if w < delta), None)


def benign_orders(count: int, streams: int, length: int, generator: torch.Generator) -> list[Tensor]:
    """Index orders of ``streams`` benign streams over ``count`` images, each of its first ``length``
    (at most ``count``): the first in the images' own order, the others seeded shuffles."""
    return [(torch.arange(count) if stream == 0 else torch.randperm(count, generator=generator))[:length]
            for stream in range(streams)]
