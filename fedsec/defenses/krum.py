"""Krum (Blanchard et al., 2017), as Flower's ``aggregate_krum`` with ``to_keep=0``."""

from __future__ import annotations

from dataclasses import replace

import torch
from pydantic import Field

from fedsec.defenses._math import krum_scores, pairwise_sq_distances, sq_distances_from_gram
from fedsec.defenses.base import Decision, Defense, DefenseParams, Kind, UpdateBatch, register
from fedsec.defenses.scalars import Scalar, ScalarBatch


class KrumParams(DefenseParams):
    """Parameters shared by the Krum family."""

    f: int = Field(0, ge=0, description="Number of Byzantine clients tolerated per round (count).")


def krum_minimum(f: int) -> int:
    """Rows Krum needs to tolerate ``f`` Byzantine ones: ``n >= 2f + 3`` (Blanchard et al.,
    NeurIPS 2017, whose guarantee holds for ``2f + 2 < n``)."""
    return 2 * f + 3


def krum_select_on_scalars(
    batch: ScalarBatch, name: str, f: int, keep: int
) -> tuple[ScalarBatch, torch.Tensor]:
    """Keep the ``keep`` accepted rows with the lowest Krum scores, from the Gram matrix.

    Parameters
    ----------
    batch : ScalarBatch
        The round's batch, with at least one accepted row.
    name : str
        Stage name the scores are recorded under.
    f : int
        Byzantine clients tolerated (count).
    keep : int
        Rows to keep (count).

    Returns
    -------
    tuple[ScalarBatch, Tensor]
        The batch with only those rows accepted and the Krum scores recorded, and their
        positions, (keep,) int64.
    """
    index = batch.accepted.nonzero().squeeze(1)
    scores = krum_scores(sq_distances_from_gram(batch.gram(index)), f)
    best = index[scores.topk(keep, largest=False).indices]
    accepted = torch.zeros_like(batch.accepted).index_fill_(0, best, True)
    return replace(batch, accepted=accepted).with_score(name, index, scores), best


@register("krum")
class Krum(Defense):
    """Keep the one row whose ``max(1, n - f - 2)`` nearest neighbours are closest (squared L2).

    Score: the Krum score (sum of squared distances to those neighbours); lower is more
    central. Only the chosen row stays accepted. Example counts are ignored. Decides from the
    Gram matrix of the rows, so it runs on ciphertexts.
    """

    kind = Kind.AGGREGATE
    Params = KrumParams
    params: KrumParams

    def minimum_rows(self) -> int:
        """``2f + 3`` (:func:`krum_minimum`)."""
        return krum_minimum(self.params.f)

    def needs(self) -> frozenset[Scalar]:
        """The Gram matrix (pairwise distances)."""
        return frozenset({Scalar.GRAM})

    def decide(self, batch: UpdateBatch) -> Decision:
        scores = krum_scores(pairwise_sq_distances(batch.updates), self.params.f)
        best = scores.argmin()
        keep = torch.zeros_like(batch.accepted).index_fill_(0, best, True)
        chosen = batch.updates.index_select(0, best.unsqueeze(0)).squeeze(0)
        return Decision(aggregate=chosen, keep=keep, score=scores)

    def on_scalars(self, batch: ScalarBatch) -> ScalarBatch:
        """The chosen row itself is the aggregate (coefficient 1)."""
        if not batch.accepted.any():
            return replace(batch, coefficients=torch.zeros_like(batch.weights))
        batch, best = krum_select_on_scalars(batch, self.name, self.params.f, 1)
        return replace(batch, coefficients=torch.zeros_like(batch.weights).index_fill_(0, best, 1.0))
