"""Bulyan (El Mhamdi et al., 2018) over Krum, as Flower's ``aggregate_bulyan``."""

from __future__ import annotations

import math

import torch

from fedsec.defenses._math import coordinate_median, krum_scores, pairwise_sq_distances
from fedsec.defenses.base import Decision, Defense, Kind, UpdateBatch, coordinate_contributions, register
from fedsec.defenses.krum import KrumParams


@register("bulyan")
class Bulyan(Defense):
    """Select ``theta = n - 2f`` rows by repeated Krum, then a coordinate-wise trimmed mean.

    Selection: Krum picks a row, which leaves the candidate set; Krum runs again on the
    rest (with ``max(1, k - f - 2)`` neighbours for k candidates), ``theta`` times. Then,
    per coordinate, the mean of the ``beta = theta - 2f`` selected values closest to the
    selected rows' median. Example counts are ignored. Score: the first-round Krum score.
    Selected rows stay accepted.
    """

    kind = Kind.AGGREGATE
    rows_reason = "coordinate-wise order statistics"
    Params = KrumParams
    params: KrumParams

    def minimum_rows(self) -> int:
        """``4f + 3`` (El Mhamdi et al., ICML 2018; Flower's ``aggregate_bulyan`` asserts it)."""
        return 4 * self.params.f + 3

    def decide(self, batch: UpdateBatch) -> Decision:
        n, f = batch.n, self.params.f
        theta, beta = n - 2 * f, n - 4 * f
        dist = pairwise_sq_distances(batch.updates)
        first_scores = krum_scores(dist, f)
        alive = torch.ones_like(batch.accepted)
        chosen = []
        for competing in range(n, n - theta, -1):
            scores = first_scores if competing == n else krum_scores(dist, f, competing)
            best = scores.masked_fill(~alive, math.inf).argmin()
            alive = alive.index_fill(0, best, False)
            dist = dist.index_fill(1, best, math.inf)
            chosen.append(best)
        order = torch.stack(chosen)
        selected = batch.updates.index_select(0, order)
        gap = (selected - coordinate_median(selected)).abs_()
        closest = gap.topk(beta, dim=0, largest=False).indices
        values = selected.gather(0, closest)
        contributions = coordinate_contributions(n, order[closest], values / beta)
        return Decision(aggregate=values.mean(dim=0), keep=~alive, score=first_scores, contributions=contributions)
