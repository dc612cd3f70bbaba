"""STRIP (Gao et al., ACSAC 2019): a triggered input keeps its prediction under superimposition.

Each input is superimposed with N clean images; the model's predictions on a clean input then
vary (high entropy), while a trigger that dominates the decision keeps them on the target class
(low entropy). The guard rejects inputs whose mean entropy falls below the boundary set on clean
inputs at the configured FRR.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from fedsec.guards.base import (
    GUARDS,
    CleanData,
    Guard,
    GuardParams,
    images,
    normal_threshold_at_frr,
    probabilities,
    threshold_at_frr,
)

Superimposition = Literal["add", "average"]


def superimpose(x: Tensor, overlays: Tensor, mode: Superimposition) -> Tensor:
    """(B, N, C, H, W) images in 0..1: each of the B inputs ``x`` (B, C, H, W) combined with its
    N ``overlays`` (B, N, C, H, W): their sum clipped to 1 (add) or their mean (average)."""
    if mode == "add":
        return (x.unsqueeze(1) + overlays).clamp(max=1.0)
    return 0.5 * x.unsqueeze(1) + 0.5 * overlays


def strip_entropy(model: nn.Module, x: Tensor, overlays: Tensor, mode: Superimposition, batch_size: int) -> Tensor:
    """(B,) STRIP entropy of inputs ``x`` in 0..1: the Shannon entropy (bits) of the model's
    prediction on each superimposed copy, averaged over the N ``overlays`` of the input."""
    b, n = overlays.shape[:2]
    p = probabilities(model, superimpose(x, overlays, mode).flatten(0, 1), batch_size)
    return -(p * p.clamp_min(1e-12).log2()).sum(1).view(b, n).mean(1)


@GUARDS.register("strip")
class Strip(Guard):
    """Rejects inputs whose predictions stay confident when clean images are superimposed."""

    class Params(GuardParams):
        name: Literal["strip"] = "strip"
        perturbations: int = Field(
            100, ge=2, le=1000, description="Clean images superimposed on each input (N; Gao et al.'s MNIST and "
            "CIFAR-10 evaluation and code: 100); each is one forward pass.")
        superimpose: Superimposition = Field(
            "add", description="add: the two images summed and clipped to the valid range (Gao et al.'s code); "
            "average: their mean (IBM ART's alpha = 0.5 blend).")
        threshold: Literal["normal", "quantile"] = Field(
            "normal", description="normal: the FRR quantile of a normal distribution fitted to the clean "
            "entropies (Gao et al.); quantile: the empirical FRR quantile of the clean entropies.")
        batch_size: int = Field(4096, ge=1, le=65_536, description="Superimposed images per forward pass.")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.params: Strip.Params = params
        self.pool: Tensor | None = None
        self.generator = torch.Generator()

    def _fit(self, model: nn.Module, clean: CleanData, generator: torch.Generator) -> None:
        """The overlay pool is the clean fitting sample; overlay draws follow a seed from ``generator``."""
        self.pool = images(clean.x)
        self.generator.manual_seed(int(torch.randint(2**62, (), generator=generator)))

    def set_threshold(self, clean_scores: Tensor) -> float:
        if self.params.threshold == "normal":
            return normal_threshold_at_frr(clean_scores, self.params.frr)
        return threshold_at_frr(clean_scores, self.params.frr)

    def score(self, model: nn.Module, x: Tensor) -> Tensor:
        """Minus the STRIP entropy (bits), so that higher is more suspicious."""
        assert self.pool is not None, "fit first"
        n = self.params.perturbations
        index = torch.randint(len(self.pool), (len(x), n), generator=self.generator).to(self.pool.device)
        per_chunk = max(1, self.params.batch_size // n)
        x = images(x).to(self.pool.device)
        return -torch.cat([
            strip_entropy(model, xb, self.pool[ib], self.params.superimpose, self.params.batch_size)
            for xb, ib in zip(x.split(per_chunk), index.split(per_chunk), strict=True)
        ])
