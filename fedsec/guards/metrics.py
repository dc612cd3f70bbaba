"""Figures of a guard chain (docs/guards.md): rejection rates, accuracy and attack success after
the chain, cost. Tensors in, numbers out; masks are bool, labels int64, all on one device."""

from __future__ import annotations

import torch
from torch import Tensor


def frr(rejected_clean: Tensor) -> float:
    """False rejection rate: share of clean inputs rejected (0..1)."""
    return rejected_clean.float().mean().item()


def far(rejected_triggered: Tensor) -> float:
    """False acceptance rate: share of triggered inputs let through (0..1)."""
    return 1 - rejected_triggered.float().mean().item()


def sda(predicted: Tensor, labels: Tensor, rejected: Tensor) -> float:
    """Sanitised data accuracy: share of clean inputs let through and classified correctly; a
    rejected input counts as an error (0..1)."""
    return ((predicted == labels) & ~rejected).float().mean().item()


def sasr(predicted: Tensor, targets: Tensor, rejected: Tensor) -> float:
    """Sanitised attack success rate: share of triggered inputs let through and classified as the
    attacker's target; a rejected input is not a success (0..1)."""
    return ((predicted == targets) & ~rejected).float().mean().item()


def seconds_per_1000(seconds: float, inputs: int) -> float:
    """Seconds per 1,000 inputs of a pass over ``inputs`` inputs that took ``seconds``."""
    return 1000 * seconds / inputs


def auc(clean_scores: Tensor, triggered_scores: Tensor) -> float | None:
    """Area under the ROC curve of scores (higher: more suspicious) separating triggered from clean
    inputs: P(triggered > clean) + P(tie) / 2 over all pairs; NaN scores (inputs a guard did not
    see) are left out; None when either side is empty."""
    clean = clean_scores[~clean_scores.isnan()].double()
    triggered = triggered_scores[~triggered_scores.isnan()].double()
    if not len(clean) or not len(triggered):
        return None
    ordered = torch.sort(clean).values
    below = torch.searchsorted(ordered, triggered, right=False)
    at_or_below = torch.searchsorted(ordered, triggered, right=True)
    return ((below + at_or_below).double().sum() / (2 * len(clean) * len(triggered))).item()
