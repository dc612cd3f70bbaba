"""Spectral signatures (Tran, Li and Madry, NeurIPS 2018): per class, score each example by its
squared projection on the top singular vector of the centred features, and remove the
``removal_factor`` x ``expected_poison_fraction`` share with the highest scores."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from fedsec.sanitization.base import SANITIZERS, Sanitizer, SanitizerParams


def spectral_signature_scores(features: Tensor) -> Tensor:
    """Outlier scores ``(n,)`` of features ``(n, d)``: ((R_i - mean R) . v)^2, v the top right
    singular vector of the centred matrix."""
    centred = features - features.mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ vh[0]).square()


def flag_top_share(scores: Tensor, share: float) -> Tensor:
    """Rows whose score reaches the ``1 - share`` quantile (linear interpolation): bool ``(n,)``."""
    cutoff = torch.quantile(scores, max(1.0 - share, 0.0))
    return scores >= cutoff


@SANITIZERS.register("spectral-signatures")
class SpectralSignatures(Sanitizer):
    """Removes the highest spectral-signature scores of each class."""

    class Params(SanitizerParams):
        name: Literal["spectral-signatures"] = "spectral-signatures"
        expected_poison_fraction: float = Field(
            0.1, gt=0, le=1, description="epsilon: the share (0..1) of each class the client expects to be "
            "poisoned (an upper bound the defender assumes; the paper uses the true share).")
        removal_factor: float = Field(
            1.5, gt=0, description="Multiple of epsilon removed from each class (1.5 in the paper).")

    params: Params

    def flag_class(self, features: Tensor, seed: int) -> Tensor:
        p = self.params
        return flag_top_share(spectral_signature_scores(features), p.removal_factor * p.expected_poison_fraction)
