"""Knockoff Nets (Orekondy et al., CVPR 2019), random policy: the thief queries images drawn
uniformly from its own data and trains its copy on the victim's probability vectors."""

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


@EXTRACTIONS.register("knockoff")
class Knockoff(Extraction):
    """The whole budget is spent at once on a uniform sample, without replacement, of the thief's
    data (the paper's adaptive policy, a bandit over the thief's classes, is not implemented)."""

    class Params(ExtractionParams):
        name: Literal["knockoff"] = "knockoff"
        output: Output = Field(
            "probabilities", description="What the victim's API returns per query: labels (top-1 class) or "
            "probabilities (the whole softmax vector; the paper's setting).")

    params: Params

    def steal(self, oracle: Oracle, pool: Tensor, substitute: nn.Module, generator: torch.Generator) -> nn.Module:
        _, x, answers = query_random(oracle, pool, self.params.budget, generator)
        return train_substitute(substitute, x, answers, self.params, generator)
