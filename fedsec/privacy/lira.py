"""The likelihood-ratio attack, LiRA (Carlini et al., S&P 2022)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from fedsec.privacy.base import PRIVACY_ATTACKS, AttackerData, MembershipInference
from fedsec.privacy.shadows import (
    PREDICT_BATCH,
    ShadowParams,
    half_memberships,
    pool_sample,
    shadow_logits,
    train_shadows,
)

Variant = Literal["online", "offline"]
Variance = Literal["global", "per-example"]

OFFLINE_Z = 1.6449
"""One-sided 5% critical value of the standard normal: the offline attack's decision."""


def logit_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """φ = log(p_y / (1 − p_y)) of the softmax probability of each example's label (N,), computed
    stably as z_y − logsumexp of the other logits."""
    true = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, labels.view(-1, 1), -math.inf).logsumexp(dim=1)
    return true - others


def _gaussian(values: torch.Tensor, mask: torch.Tensor, variance: Variance) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example mean of ``values`` (models, examples) where ``mask``, and their standard
    deviation: per example, or one over all masked values (the reference code's global variance)."""
    count = mask.sum(dim=0)
    mean = (values * mask).sum(dim=0) / count
    if variance == "global":
        std = values[mask].std(unbiased=False).expand_as(mean)
    else:
        std = (((values - mean) ** 2 * mask).sum(dim=0) / count).sqrt()
    return mean, std + 1e-30


def _log_normal(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((x - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)


def lira_scores(
    target: torch.Tensor, shadow: torch.Tensor, keep: torch.Tensor, variant: Variant, variance: Variance
) -> torch.Tensor:
    """LiRA's statistic per example from logit-scaled confidences: ``target`` (N,) of the
    attacked model, ``shadow`` (K, N) of the shadow models, ``keep`` (K, N) True where the
    example was in shadow k's training data. Online: log N(φ; μ_in, σ_in) − log N(φ; μ_out,
    σ_out); offline: (φ − μ_out) / σ_out, monotone in the one-sided test's confidence."""
    target, shadow = target.double(), shadow.double()
    out_mean, out_std = _gaussian(shadow, ~keep, variance)
    if variant == "offline":
        return (target - out_mean) / out_std
    in_mean, in_std = _gaussian(shadow, keep, variance)
    return _log_normal(target, in_mean, in_std) - _log_normal(target, out_mean, out_std)


@PRIVACY_ATTACKS.register("lira")
class LiRA(MembershipInference):
    """Shadow models of the target's architecture train as the clients do; per candidate, Gaussians
    fitted to the shadows' logit-scaled confidence on it when it was in their training data (IN)
    and when not (OUT); the target's confidence is scored by their likelihood ratio. Online (the
    paper's main attack): every candidate is in half the shadows, with half the attacker's own
    examples; offline: shadows train on the attacker's examples only and the score is how far
    above the OUT Gaussian the target's confidence lies. Scores only the candidates it was
    prepared with."""

    class Params(ShadowParams):
        name: Literal["lira"] = "lira"
        variant: Variant = Field("online", description="online: IN and OUT shadow models (the paper's main "
                                 "attack); offline: OUT shadow models only, no shadow trains on a candidate.")
        variance: Variance = Field(
            "global", description="global: one standard deviation over all examples (the paper's choice below "
            "64 shadow models); per-example: each candidate's own.")

    params: Params
    shadow: torch.Tensor | None = None
    """(K, N) the shadow models' confidences on the candidates, once prepared."""
    keep: torch.Tensor | None = None
    """(K, N) True where a candidate was in shadow k's training data."""

    def prepare(self, data: AttackerData, generator: torch.Generator) -> None:
        p = self.params
        pool_x, pool_y = pool_sample(data, p.pool_size, generator)
        if p.variant == "online":
            x, y = torch.cat([data.candidates_x, pool_x]), torch.cat([data.candidates_y, pool_y])
        else:
            x, y = pool_x, pool_y
        keep = half_memberships(p.shadow_models, len(y), generator)
        confidences = [logit_confidence(shadow_logits(model, data.candidates_x, data.device), data.candidates_y)
                       for model in train_shadows(data, x, y, keep, p.epochs, generator)]
        self.shadow = torch.stack(confidences)
        n = len(data.candidates_y)
        self.keep = keep[:, :n] if p.variant == "online" else torch.zeros_like(self.shadow, dtype=torch.bool)

    @torch.no_grad()
    def scores(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.shadow is None or self.keep is None or len(y) != self.shadow.shape[1]:
            raise ValueError("LiRA scores the candidates it was prepared with")
        model.eval()
        logits = torch.cat([model(b) for b in x.split(PREDICT_BATCH)]).cpu()
        return lira_scores(logit_confidence(logits, y.cpu()), self.shadow, self.keep,
                           self.params.variant, self.params.variance).float()

    def threshold(self, member_scores: torch.Tensor) -> float:
        """Online: a likelihood ratio of 1; offline: the one-sided test at 5%."""
        return OFFLINE_Z if self.params.variant == "offline" else 0.0
