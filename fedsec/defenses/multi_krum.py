"""Multi-Krum (Blanchard et al., 2017; El Mhamdi et al., 2018), as Flower's ``aggregate_krum`` with ``to_keep=m``."""

from __future__ import annotations

from dataclasses import replace

import torch
from pydantic import Field

from fedsec.defenses._math import krum_scores, pairwise_sq_distances, weighted_mean
from fedsec.defenses.base import Decision, Defense, Kind, UpdateBatch, register
from fedsec.defenses.krum import KrumParams, krum_minimum, krum_select_on_scalars
from fedsec.defenses.scalars import Scalar, ScalarBatch


@register("multi-krum")
class MultiKrum(Defense):
    """Keep the ``m`` rows with the lowest Krum scores; example-weighted mean of them.

    Differs from the papers in two ways, both as in Flower's ``aggregate_krum``: the kept rows
    are averaged weighted by their examples, where Blanchard et al. (NeurIPS 2017) average
    them equally (the same when clients hold equal data); and the scores are computed once,
    as in Blanchard et al.'s m-Krum, where El Mhamdi et al. (ICML 2018) pick the rows one at
    a time, recomputing the Krum scores of the remaining rows after each pick.

    Score: the Krum score (lower is more central). Decides from the Gram matrix of the
    rows, so it runs on ciphertexts.
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

    def needs(self) -> frozenset[Scalar]:
        """The Gram matrix (pairwise distances)."""
        return frozenset({Scalar.GRAM})

    def decide(self, batch: UpdateBatch) -> Decision:
        n, f = batch.n, self.params.f
        m = self.params.kept(n)
        scores = krum_scores(pairwise_sq_distances(batch.updates), f)
        best = scores.topk(m, largest=False).indices
        keep = batch.accepted.new_zeros(n).index_fill_(0, best, True)
        aggregate = weighted_mean(batch.updates, batch.weights * keep)
        return Decision(aggregate=aggregate, keep=keep, score=scores, info={"kept": m})

    def on_scalars(self, batch: ScalarBatch) -> ScalarBatch:
        """Coefficients of the example-weighted mean of the kept rows."""
        if not batch.accepted.any():
            return replace(batch, coefficients=torch.zeros_like(batch.weights))
        m = self.params.kept(int(batch.accepted.sum()))
        batch, _ = krum_select_on_scalars(batch, self.name, self.params.f, m)
        info = {**batch.info, f"{self.name}.kept": float(m)}
        return replace(batch, coefficients=batch.mean_coefficients(), info=info)
