"""Retraining (Tramèr et al., USENIX Security 2016): the thief labels its own images with the
victim's answers and trains a copy on them; over several rounds, adaptive retraining queries the
images the current copy is least sure of."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from fedsec.extraction.base import (
    EXTRACTIONS,
    Extraction,
    ExtractionParams,
    Oracle,
    Output,
    query_random,
    train_substitute,
)

MAX_ROUNDS = 1_000


@EXTRACTIONS.register("retraining")
class Retraining(Extraction):
    """Round 1 queries ``budget / rounds`` images drawn uniformly from the thief's data; each later
    round queries, among the images not yet queried, those with the smallest margin between the
    copy's two highest probabilities (the active-learning step of adaptive retraining). The copy
    is trained after every round on all answers so far, continuing from its current weights.
    With ``rounds: 1`` this is the paper's plain retraining (and Knockoff's random policy)."""

    class Params(ExtractionParams):
        name: Literal["retraining"] = "retraining"
        output: Output = Field(
            "probabilities", description="What the victim's API returns per query: labels (top-1 class) or "
            "probabilities (the whole softmax vector; the paper's confidence values).")
        rounds: int = Field(
            4, ge=1, le=MAX_ROUNDS, description=f"Query rounds (at most {MAX_ROUNDS:,}): 1 is plain retraining, "
            "more is adaptive retraining with an equal share of the budget per round.")

    params: Params

    def steal(self, oracle: Oracle, pool: Tensor, substitute: nn.Module, generator: torch.Generator) -> nn.Module:
        p = self.params
        share = max(1, p.budget // p.rounds)
        index, x, answers = query_random(oracle, pool, share, generator)
        queried = torch.zeros(len(pool), dtype=torch.bool, device=pool.device)
        queried[index] = True
        train_substitute(substitute, x, answers, p, generator)
        for round_number in range(2, p.rounds + 1):
            count = min(share if round_number < p.rounds else oracle.remaining, oracle.remaining,
                        int((~queried).sum()))
            if count == 0:
                break
            candidates = (~queried).nonzero().squeeze(1)
            with torch.no_grad():
                top2 = torch.cat([substitute(b).softmax(1).topk(2, dim=1).values
                                  for b in pool[candidates].split(1000)])
            chosen = candidates[(top2[:, 0] - top2[:, 1]).argsort()[:count]]
            queried[chosen] = True
            x, answers = torch.cat([x, pool[chosen]]), torch.cat([answers, oracle(pool[chosen])])
            train_substitute(substitute, x, answers, p, generator)
        return substitute.eval()
