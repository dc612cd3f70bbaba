"""Uchida et al. (2017) weight watermark: T secret bits in the projection of a layer's mean filter.

With ``w̄`` the mean over output channels of the marked weight (flattened, M values) and ``X`` a
secret (T, M) Gaussian matrix, the extracted bits are ``step(X·w̄)``; embedding adds
``weight · BCE(σ(X·w̄), b)`` to the loss. A model without the watermark matches each bit with
probability 1/2 (X is independent of it), which gives the binomial p-value of the match count.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from fedsec.watermark.base import (
    WATERMARKS,
    OwnerPool,
    Secrets,
    Watermark,
    WatermarkParams,
    key_generator,
)
from fedsec.watermark.layers import layer_problems, marked_weight


def mean_filter(weight: Tensor) -> Tensor:
    """w̄: the mean of ``weight`` over its output channels (dim 0), flattened to (M,)."""
    return weight.mean(0).flatten()


def draw_projection(generator: torch.Generator, bits: int, columns: int) -> Secrets:
    """Secrets of T = ``bits`` bits on a mean filter of M = ``columns`` values: a Gaussian
    ``projection`` X (T, M) and the ``bits`` b (T,), drawn in that order from ``generator``."""
    return {
        "projection": torch.randn(bits, columns, generator=generator),
        "bits": torch.randint(0, 2, (bits,), generator=generator),
    }


def projected(weight: Tensor, projection: Tensor) -> Tensor:
    """X·w̄ (T,): the projection of ``weight``'s mean filter; positive means bit 1."""
    return projection.to(weight) @ mean_filter(weight)


@WATERMARKS.register("uchida")
class Uchida(Watermark):
    """Bits in the projection of the mean filter of one weight tensor."""

    class Params(WatermarkParams):
        name: Literal["uchida"] = "uchida"
        bits: int = Field(64, ge=1, description="Watermark length T in bits.")
        layer: str | None = Field(
            None, description="Parameter name of the marked weight (default: the last convolution's weight).")
        weight: float = Field(
            5.0, gt=0,
            description="λ: weight of the watermark loss next to the clean loss (dimensionless). The paper uses "
            "0.01 with the regularizer on every step of centralised training; here the owner embeds in short "
            "fine-tuning passes on the global model that stop at the target, which a larger λ reaches in fewer "
            "steps.",
        )

    params: Params
    statistic = "ber"

    def check(self, model: nn.Module, ciphertext_slots: int | None) -> list[str]:
        return layer_problems(lambda: marked_weight(model, self.params.layer))

    def marked_layer(self, model: nn.Module) -> str:
        return marked_weight(model, self.params.layer)

    def create(self, key: bytes, pool: OwnerPool, model: nn.Module) -> Secrets:
        generator = key_generator(key, "uchida")
        weight = dict(model.named_parameters())[marked_weight(model, self.params.layer)]
        return draw_projection(generator, self.params.bits, weight[0].numel())

    def logits(self, model: nn.Module, secrets: Secrets) -> Tensor:
        """X·w̄ (T,): positive means bit 1."""
        return projected(dict(model.named_parameters())[marked_weight(model, self.params.layer)], secrets["projection"])

    def loss(self, model: nn.Module, secrets: Secrets, generator: torch.Generator, batch_size: int) -> Tensor:
        logits = self.logits(model, secrets)
        return self.params.weight * nn.functional.binary_cross_entropy_with_logits(logits, secrets["bits"].to(logits))

    def answers(self, model: nn.Module, secrets: Secrets) -> tuple[Tensor, float]:
        with torch.no_grad():
            logits = self.logits(model, secrets)
        return (logits > 0).long() == secrets["bits"].to(logits.device), 0.5
