"""Detector-based white-box watermark on activations (in the spirit of FedCrypt's projection network).

The secret is a trigger set (noise images from the key), a reference set (natural images), a
fixed random two-layer projection network ``P`` and T bits ``b``. The marked feature is the
difference ``a`` between the mean activations (at the input of a chosen layer) on the triggers
and on the reference images, normalised to unit length; the detector reads ``step(P(a))``.
Embedding adds ``weight · BCE(σ(P(a)), b)`` to the loss. Because ``P`` is random, odd
(tanh, no biases) and independent of any model trained without the secret, each bit of such a
model matches with probability 1/2, which gives the binomial p-value; the statistic is the
watermark detection rate (WDR, share of bits recovered).
"""

from __future__ import annotations

import math
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
from fedsec.watermark.layers import layer_problems, probed_module
from fedsec.watermark.tensors import as_input, model_device


def module_inputs(model: nn.Module, module: nn.Module, x: Tensor) -> Tensor:
    """The input of ``module`` when ``model`` runs on float images ``x``, flattened to (N, D)."""
    captured: list[Tensor] = []
    handle = module.register_forward_pre_hook(lambda _, args: captured.append(args[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return captured[0].flatten(1)


@WATERMARKS.register("detector")
class Detector(Watermark):
    """Bits read by a secret projection network from trigger-minus-reference activations."""

    class Params(WatermarkParams):
        name: Literal["detector"] = "detector"
        bits: int = Field(64, ge=1, description="Watermark length T in bits.")
        triggers: int = Field(32, ge=1, description="Trigger images (and as many reference images).")
        layer: str | None = Field(
            None, description="Module whose input activations are read (default: the last linear layer).")
        hidden: int = Field(64, ge=1, description="Hidden units of the projection network.")
        weight: float = Field(
            5.0, gt=0, description="λ: weight of the watermark loss next to the clean loss (dimensionless).")

    params: Params
    statistic = "wdr"

    def check(self, model: nn.Module, ciphertext_slots: int | None) -> list[str]:
        return layer_problems(lambda: probed_module(model, self.params.layer))

    def create(self, key: bytes, pool: OwnerPool, model: nn.Module) -> Secrets:
        p = self.params
        generator = key_generator(key, "detector")
        triggers = torch.randint(0, 256, (p.triggers, *pool.x.shape[1:]), generator=generator, dtype=torch.uint8)
        reference, _ = pool.take(p.triggers)
        with torch.no_grad():
            width = module_inputs(model, probed_module(model, p.layer), as_input(reference[:1], model_device(model))).shape[1]
        return {
            "x": triggers, "reference": reference.clone(),
            "first": torch.randn(p.hidden, width, generator=generator),
            "second": torch.randn(p.bits, p.hidden, generator=generator) / math.sqrt(p.hidden),
            "bits": torch.randint(0, 2, (p.bits,), generator=generator),
        }

    def logits(self, model: nn.Module, secrets: Secrets) -> Tensor:
        """P(a) (T,): positive means bit 1."""
        device = model_device(model)
        images = as_input(torch.cat([secrets["x"], secrets["reference"]]), device)
        features = module_inputs(model, probed_module(model, self.params.layer), images)
        n = len(secrets["x"])
        difference = features[:n].mean(0) - features[n:].mean(0)
        direction = difference / difference.norm().clamp_min(1e-12)
        return secrets["second"].to(device) @ torch.tanh(secrets["first"].to(device) @ direction)

    def loss(self, model: nn.Module, secrets: Secrets, generator: torch.Generator, batch_size: int) -> Tensor:
        logits = self.logits(model, secrets)
        return self.params.weight * nn.functional.binary_cross_entropy_with_logits(logits, secrets["bits"].to(logits))

    def answers(self, model: nn.Module, secrets: Secrets) -> tuple[Tensor, float]:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            logits = self.logits(model, secrets)
        model.train(was_training)
        return (logits > 0).long() == secrets["bits"].to(logits.device), 0.5
