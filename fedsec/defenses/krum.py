"""Krum (Blanchard et al., 2017), as Flower's ``aggregate_krum`` with ``to_keep=0``."""

from __future__ import annotations

import torch
from pydantic import Field

from fedsec.defenses._math import krum_scores, pairwise_sq_distances
from fedsec.defenses.base import Decision, Defense, DefenseParams, Kind, UpdateBatch, register


class KrumParams(DefenseParams):
    """Parameters shared by the Krum family."""

    f: int = Field(0, ge=0, description="Number of Byzantine clients tolerated per round (count).")


@register("krum")
class Krum(Defense):
    """Keep the one row whose ``max(1, n - f - 2)`` nearest neighbours are closest (squared L2).

    Score: the Krum score (sum of squared distances to those neighbours); lower is more
    central. Only the chosen row stays accepted. Example counts are ignored.
    """

    kind = Kind.AGGREGATE
    Params = KrumParams
    params: KrumParams

    def decide(self, batch: UpdateBatch) -> Decision:
        scores = krum_scores(pairwise_sq_distances(batch.updates), self.params.f)
        best = scores.argmin()
        keep = torch.zeros_like(batch.accepted).index_fill_(0, best, True)
        chosen = batch.updates.index_select(0, best.unsqueeze(0)).squeeze(0)
        return Decision(aggregate=chosen, keep=keep, score=scores)
