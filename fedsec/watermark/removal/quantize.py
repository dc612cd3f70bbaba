"""Post-training quantization of the weights: int8 or float16."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from fedsec.watermark.removal.base import (
    REMOVALS,
    Removal,
    RemovalContext,
    RemovalParams,
    weights,
)


def int8_round_trip(weight: Tensor) -> Tensor:
    """``weight`` stored as symmetric per-output-channel int8 (as PyTorch's dynamic quantization stores
    linear weights) and read back as float: at most 255 distinct values per output channel."""
    shape = (-1,) + (1,) * (weight.dim() - 1)
    scales = (weight.detach().flatten(1).abs().amax(1) / 127.0).clamp_min(1e-12).view(shape)
    stored = (weight.detach() / scales).round().clamp(-127, 127).to(torch.int8)
    return stored.to(weight.dtype) * scales


@REMOVALS.register("quantize")
class Quantize(Removal):
    """int8: every weight matrix and kernel goes through int8 (biases and activations stay float);
    fp16: every floating-point parameter and buffer goes through float16."""

    class Params(RemovalParams):
        name: Literal["quantize"] = "quantize"
        precision: Literal["int8", "fp16"] = Field("int8", description="Storage precision of the weights.")

    params: Params
    strength = "precision"

    def __call__(self, model: nn.Module, context: RemovalContext) -> nn.Module:
        with torch.no_grad():
            if self.params.precision == "int8":
                for w in weights(model):
                    w.copy_(int8_round_trip(w))
            else:
                for t in [*model.parameters(), *model.buffers()]:
                    if t.is_floating_point():
                        t.copy_(t.half().float())
        return model
