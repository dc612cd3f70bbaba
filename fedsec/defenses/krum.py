"""Krum (Blanchard et al., 2017), as Flower's ``aggregate_krum`` with ``to_keep=0``."""

from __future__ import annotations

import torch
from pydantic import Field

from fedsec.defenses._math import krum_scores, pairwise_sq_distances
from fedsec.defenses.base import Decision, Defense, DefenseParams, Kind, UpdateBatch, register


class KrumParams(DefenseParams):
    """Parameters shared by the Krum family."""

    f: int = Field(0, ge=0, description="Number of Byzantine clients tolerated per round (count).")


def krum_minimum(f: int) -> int:
    """Rows Krum needs to tolerate ``f`` Byzantine ones: ``n >= 2f + 3`` (Blanchard et al.,
    NeurIPS 2017, whose guarantee holds for ``2f + 2 < n``)."""
    return 2 * f + 3


@register("krum")
class Krum(Defense):
    """Keep the one row whose ``max(1, n - f - 2)`` nearest neighbours are closest (squared L2).

    Score: the Krum score (sum of squared distances to those neighbours); lower is more
    central. Only the chosen row stays accepted. Example counts are ignored.
    """

    kind = Kind.AGGREGATE
    Params = KrumParams
    params: KrumParams

    def minimum_rows(self) -> int:
        """``2f + 3`` (:func:`krum_minimum`)."""
        return krum_minimum(self.params.f)

    def decide(self, batch: UpdateBatch) -> Decision:
        scores = krum_scores(pairwise_sq_distances(batch.updates), self.params.f)
        best = scores.argmin()
        keep = torch.zeros_like(batch.accepted).index_fill_(0, best, True)
        chosen = batch.updates.index_select(0, best.unsqueeze(0)).squeeze(0)
        return Decision(aggregate=chosen, keep=keep, score=scores)
