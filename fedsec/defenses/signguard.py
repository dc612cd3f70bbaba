"""SignGuard (Xu et al., ICDCS 2022): norm filtering and clustering of sign statistics."""

from __future__ import annotations

import math

import torch
from pydantic import Field, model_validator
from torch import Tensor

from fedsec.defenses._math import TINY, clip_factors, random_coordinates, row_norms
from fedsec.defenses.base import Decision, Defense, DefenseParams, Kind, UpdateBatch, register


def largest_linked_group(points: Tensor, quantile: float) -> Tensor:
    """Mask of the largest group of ``points`` (n, p) chained by links shorter than a bandwidth.

    The bandwidth is scikit-learn's ``estimate_bandwidth``: the mean distance of each
    point to its ``int(quantile * n)``-th nearest point (itself included). Groups are the
    connected components of the graph joining points closer than that (DBSCAN with
    ``min_samples = 1``), so a unimodal cloud stays whole and a separated group splits off.
    """
    n = points.shape[0]
    distance = torch.cdist(points, points)
    bandwidth = distance.kthvalue(max(1, int(quantile * n)), dim=1).values.mean()
    linked = distance <= bandwidth
    label = torch.arange(n, device=points.device)
    for _ in range(n):  # label propagation: every point takes the smallest label it reaches
        spread = torch.where(linked, label.unsqueeze(0), n).min(dim=1).values
        if torch.equal(spread, label):
            break
        label = spread
    return label == torch.bincount(label, minlength=n).argmax()


@register("signguard")
class SignGuard(Defense):
    """Reject rows with an unusual norm or sign statistics, then clip the rest to the median norm.

    1. Norm filter: keep rows with ``lower <= |x_i| / median_j |x_j| <= upper``.
    2. Sign filter: on a random ``coordinate_fraction`` of the coordinates (from the
       batch's generator), each row's fractions of positive, zero and negative entries;
       keep the largest cluster of these 3-D features. Differs from the paper: Xu et al.
       cluster with MeanShift; here the clusters are DBSCAN-style linked groups with
       MeanShift's estimated bandwidth (the paper allows other clusterings), because
       scikit-learn's MeanShift splits a single honest cloud and rejects ~40% of honest
       rows when nobody attacks.
    3. Rows passing both stay accepted; every row is scaled to norm <= the median norm,
       and the pipeline (or a later aggregator) averages the accepted ones.

    Score: the ratio of each row's norm to the median norm. No minimum beyond one row: both
    filters compare rows with the majority, which a single row is.
    """

    kind = Kind.SCREEN
    rows_reason = "sign statistics of the update coordinates"

    class Params(DefenseParams):
        lower: float = Field(0.1, ge=0.0, description="Smallest accepted norm / median norm.")
        upper: float = Field(3.0, gt=0.0, description="Largest accepted norm / median norm.")
        coordinate_fraction: float = Field(
            0.1, gt=0.0, le=1.0, description="Fraction of coordinates whose signs are counted."
        )
        bandwidth_quantile: float = Field(
            0.5, gt=0.0, le=1.0, description="Linking bandwidth: neighbour rank as a fraction of n."
        )

        @model_validator(mode="after")
        def _ordered(self) -> SignGuard.Params:
            if self.lower >= self.upper:
                raise ValueError(f"lower ({self.lower}) must be below upper ({self.upper})")
            return self

    params: Params

    def decide(self, batch: UpdateBatch) -> Decision:
        rows, d = batch.updates, batch.d
        norms = row_norms(rows)
        median = norms.median()
        ratio = norms / median.clamp_min(TINY)
        norm_ok = (ratio >= self.params.lower) & (ratio <= self.params.upper)

        k = math.ceil(self.params.coordinate_fraction * d)
        if k < d:
            coordinates = random_coordinates(d, k, batch.require_generator(self.name), rows.device)
            signs = rows.index_select(1, coordinates).sign()
        else:
            signs = rows.sign()
        counts = torch.stack([(signs > 0).sum(1), (signs == 0).sum(1), (signs < 0).sum(1)], dim=1)
        features = counts.to(rows.dtype) / signs.shape[1]
        sign_ok = largest_linked_group(features, self.params.bandwidth_quantile)

        updates = rows * clip_factors(norms, median).unsqueeze(1)
        info = {"median_norm": float(median)}
        return Decision(keep=norm_ok & sign_ok, score=ratio, updates=updates, info=info)
