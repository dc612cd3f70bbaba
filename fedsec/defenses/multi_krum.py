"""Multi-Krum (El Mhamdi et al., 2018), as Flower's ``aggregate_krum`` with ``to_keep=m``."""

from __future__ import annotations

from pydantic import Field

from fedsec.defenses._math import krum_scores, pairwise_sq_distances, weighted_mean
from fedsec.defenses.base import Decision, Defense, Kind, UpdateBatch, register
from fedsec.defenses.krum import KrumParams, krum_minimum


@register("multi-krum")
class MultiKrum(Defense):
    """Keep the ``m`` rows with the lowest Krum scores; example-weighted mean of them.

    Score: the Krum score (lower is more central).
    """

    kind = Kind.AGGREGATE

    class Params(KrumParams):
        m: int | None = Field(
            None, ge=1, description="Rows kept (count); None keeps n - f, at least 1."
        )

        def kept(self, n: int) -> int:
            """Rows kept out of ``n`` (count)."""
            return self.m if self.m is not None else n - self.f

    params: Params

    def minimum_rows(self) -> int:
        """Krum's ``2f + 3`` (:func:`~fedsec.defenses.krum.krum_minimum`), and at least the
        ``m`` rows to keep (Blanchard et al., NeurIPS 2017, define m-Krum for ``m <= n``)."""
        return max(krum_minimum(self.params.f), self.params.m or 0)

    def decide(self, batch: UpdateBatch) -> Decision:
        n, f = batch.n, self.params.f
        m = self.params.kept(n)
        scores = krum_scores(pairwise_sq_distances(batch.updates), f)
        best = scores.topk(m, largest=False).indices
        keep = batch.accepted.new_zeros(n).index_fill_(0, best, True)
        aggregate = weighted_mean(batch.updates, batch.weights * keep)
        return Decision(aggregate=aggregate, keep=keep, score=scores, info={"kept": m})
