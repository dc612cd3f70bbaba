"""FoolsGold (Fung, Yoon & Beschastnikh, RAID 2020): down-weight clients that act alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from fedsec.defenses._math import TINY, cosine_similarity_matrix, weighted_mean
from fedsec.defenses.base import Decision, Defense, DefenseParams, Kind, UpdateBatch, mean_contributions, register


def foolsgold_weights(history: Tensor, kappa: float) -> Tensor:
    """FoolsGold weights in [0, 1] of the rows of ``history`` (n, d), from their cosine similarity.

    Each row's largest similarity to another row, after "pardoning" (similarities to a
    row that is itself more similar to someone are scaled down by the ratio of the two
    maxima), becomes ``1 - max``; weights are rescaled to a maximum of 1 (then 0.99) and
    mapped through ``kappa * (logit(w) + 0.5)`` clipped to [0, 1].
    """
    similarity = cosine_similarity_matrix(history).fill_diagonal_(0.0)
    top = similarity.max(dim=1).values  # >= 0: the zero diagonal takes part
    lower = top.unsqueeze(1) < top.unsqueeze(0)
    pardon = torch.where(lower, top.unsqueeze(1) / top.unsqueeze(0).clamp_min(TINY), 1.0)
    weights = (1.0 - (similarity * pardon).max(dim=1).values).clamp(0.0, 1.0)
    weights = weights / weights.max().clamp_min(TINY)
    weights = torch.where(weights == 1.0, 0.99, weights)
    return (kappa * (torch.log(weights / (1.0 - weights)) + 0.5)).clamp(0.0, 1.0)


@register("foolsgold")
class FoolsGold(Defense):
    """Weighted mean of the rows with FoolsGold weights computed on each sender's history.

    Stateful: keeps, per sender handle (``UpdateBatch.senders``, or row position when
    absent), the sum of all its accepted updates so far; similarity is computed on those
    sums, so sybils pushing the same objective over rounds look alike. Example counts
    are ignored, and so is the paper's optional per-feature importance weighting. Rows
    whose weight is 0 are rejected. Score: the weight in [0, 1]. No minimum beyond one
    row: a sender alone in its round resembles nobody and keeps weight 1.
    """

    kind = Kind.AGGREGATE
    rows_reason = "similarities of per-sender histories kept as plaintext rows"

    class Params(DefenseParams):
        kappa: float = Field(
            1.0, gt=0.0, description="Confidence: slope of the logit mapping similarity to weight (dimensionless)."
        )

    params: Params

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._senders: Tensor | None = None  # (m,) int64 handles seen so far
        self._history: Tensor | None = None  # (m, d) sum of each one's updates

    def decide(self, batch: UpdateBatch) -> Decision:
        history = self._accumulate(batch.sender_keys(), batch.updates)
        weights = foolsgold_weights(history, self.params.kappa)
        aggregate = weighted_mean(batch.updates, weights)
        contributions = mean_contributions(batch.updates, weights)
        return Decision(aggregate=aggregate, keep=weights > 0, score=weights, contributions=contributions)

    def _accumulate(self, keys: Tensor, rows: Tensor) -> Tensor:
        """Add ``rows`` to their senders' histories; return those histories, (k, d)."""
        senders = keys.new_empty(0) if self._senders is None else self._senders.to(keys.device)
        d = rows.shape[1]
        history = rows.new_zeros(0, d) if self._history is None else self._history.to(rows)
        match = keys.unsqueeze(1) == senders.unsqueeze(0)
        newcomers = keys[~match.any(dim=1)].unique()
        if newcomers.numel():
            senders = torch.cat([senders, newcomers])
            history = torch.cat([history, rows.new_zeros(newcomers.numel(), d)])
            match = keys.unsqueeze(1) == senders.unsqueeze(0)
        position = match.to(torch.uint8).argmax(dim=1)
        history.index_add_(0, position, rows)
        self._senders, self._history = senders, history
        return history.index_select(0, position)

    def state_dict(self) -> dict[str, Any]:
        if self._senders is None:
            return {}
        assert self._history is not None
        return {"senders": self._senders.clone(), "history": self._history.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        senders, history = state.get("senders"), state.get("history")
        self._senders = None if senders is None else senders.clone()
        self._history = None if history is None else history.clone()
