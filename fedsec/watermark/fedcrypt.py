"""FedCrypt-style white-box watermark: T bits read by a polynomial detector ``p(A w)`` from one
weight tensor, embedded by gradient steps on that tensor alone (no data).

The arithmetic is in :mod:`fedsec.crypto.whitebox`: on a plaintext model the owner runs its
float64 mirror; under ``encryption: ckks`` the same steps run on the encrypted target layer
(:meth:`FedCrypt.embed_encrypted`). A model without the watermark reads each secret bit with
probability 1/2 (the bits are drawn independently of it), which gives the binomial p-value; the
statistic is the WDR.
"""

from __future__ import annotations

from typing import Literal

import tenseal as ts
import torch
from pydantic import Field
from torch import Tensor, nn

from fedsec.crypto.key_authority import Decryptor
from fedsec.crypto.whitebox import Detector, EncryptedEmbedder, MirrorEmbedder, embed_layer
from fedsec.watermark.base import (
    WATERMARKS,
    OwnerPool,
    Secrets,
    Watermark,
    WatermarkParams,
    key_generator,
)
from fedsec.watermark.layers import layer_problems
from fedsec.watermark.settings import EmbeddingConfig
from fedsec.watermark.stats import Verdict


@WATERMARKS.register("fedcrypt")
class FedCrypt(Watermark):
    """Bits of a polynomial detector on one weight tensor; embeddable on ciphertexts."""

    class Params(WatermarkParams):
        name: Literal["fedcrypt"] = "fedcrypt"
        bits: int = Field(32, ge=1, description="Watermark length T in bits.")
        layer: str | None = Field(
            None, description="Parameter name of the marked weight (default: the last linear layer's weight; "
            "under CKKS it must fit one ciphertext, N/2 values).")
        lr: float = Field(2.0, gt=0, description="Step size of the detector-loss gradient steps on the layer.")
        reach: float = Field(
            0.15, gt=0, lt=0.5, description="The steps push each detector output towards 0.5 ± reach on its "
            "bit's side (not to 0/1, so the layer moves no further than the verdict needs).")
        margin: float = Field(
            0.1, ge=0, lt=0.5, description="Embedding stops once every detector output is this far beyond "
            "0.5 on its bit's side (keeps the verdict clear of CKKS noise and of the next round's training).")

    params: Params
    statistic = "wdr"
    embeds_on_ciphertexts = True

    def layer_name(self, model: nn.Module) -> str:
        """The parameter the watermark lives in; ValueError when the scenario names no weight of the model."""
        parameters = dict(model.named_parameters())
        if self.params.layer is None:
            return f"{[n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]}.weight"
        if self.params.layer not in parameters:
            raise ValueError(f"{self.params.layer!r} is not a parameter of the model (known: {', '.join(parameters)})")
        return self.params.layer

    def check(self, model: nn.Module, ciphertext_slots: int | None) -> list[str]:
        return layer_problems(lambda: self.layer_name(model)) or super().check(model, ciphertext_slots)

    def ciphertext_layer(self, model: nn.Module) -> str:
        return self.layer_name(model)

    def create(self, key: bytes, pool: OwnerPool, model: nn.Module) -> Secrets:
        size = dict(model.named_parameters())[self.layer_name(model)].numel()
        detector = Detector.random(self.params.bits, size, key_generator(key, "fedcrypt"))
        return {"projection": detector.projection, "bits": detector.bits}

    @staticmethod
    def detector(secrets: Secrets) -> Detector:
        """The detector held in ``secrets`` (on the CPU)."""
        return Detector(secrets["projection"].cpu(), secrets["bits"].cpu())

    def _weight(self, model: nn.Module) -> nn.Parameter:
        return dict(model.named_parameters())[self.layer_name(model)]

    def loss(self, model: nn.Module, secrets: Secrets, generator: torch.Generator, batch_size: int) -> Tensor:
        """The detector loss ``1/2 sum_k (p(z_k) - b_k)^2`` (differentiable, for fine-tuning embedders)."""
        weight = self._weight(model).flatten().double()
        outputs = Detector(secrets["projection"], secrets["bits"]).outputs(weight)
        return 0.5 * ((outputs - secrets["bits"]) ** 2).sum().float()

    def answers(self, model: nn.Module, secrets: Secrets) -> tuple[Tensor, float]:
        with torch.no_grad():
            weight = self._weight(model).flatten().double().cpu()
        detector = self.detector(secrets)
        return detector.correct(detector.outputs(weight)), 0.5

    def embed(self, model: nn.Module, secrets: Secrets, clean_x: Tensor, clean_y: Tensor,
              settings: EmbeddingConfig, generator: torch.Generator) -> int:
        """Mirror steps on the plaintext layer (no data); returns the steps taken."""
        weight = self._weight(model)
        detector = self.detector(secrets)
        with torch.no_grad():
            layer, steps, _ = embed_layer(MirrorEmbedder(detector, self.params.lr, self.params.reach), detector,
                                          weight.flatten().double().cpu(), settings.max_steps,
                                          settings.check_every, self.params.margin)
            weight.copy_(layer.view_as(weight).to(weight))
        return steps

    def embed_encrypted(self, layer: ts.CKKSVector, secrets: Secrets, key: Decryptor,
                        settings: EmbeddingConfig | None, false_alarm: float) -> tuple[ts.CKKSVector, int, Verdict]:
        """Homomorphic steps on the encrypted layer; ``key`` decrypts the detector outputs alone."""
        detector = self.detector(secrets)
        embedder = EncryptedEmbedder(detector, self.params.lr, self.params.reach, key)
        steps = 0
        if settings is None:
            outputs = embedder.outputs(layer)
        else:
            layer, steps, outputs = embed_layer(embedder, detector, layer, settings.max_steps,
                                                settings.check_every, self.params.margin)
        return layer, steps, self.verdict(detector.correct(outputs), 0.5, false_alarm)
