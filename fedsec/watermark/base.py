"""The contract every owner watermark follows (docs/architecture.md) and its registry.

A scheme draws its secrets once (:meth:`Watermark.create`), then the owner embeds them by
fine-tuning with :meth:`Watermark.loss` added to the clean loss (see :mod:`.embedding`) and
checks a model with :meth:`Watermark.verify`. Secrets are a flat ``dict[str, Tensor]`` so they
save with ``torch.save`` and move between devices; images are uint8 ``(N, C, H, W)`` (0..255).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import ClassVar

import tenseal as ts
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from fedsec.crypto.key_authority import Decryptor
from fedsec.registry import Registry
from fedsec.watermark.embedding import fine_tune
from fedsec.watermark.settings import EmbeddingConfig
from fedsec.watermark.stats import Verdict
from fedsec.watermark.tensors import Secrets


class WatermarkParams(BaseModel):
    """Base of every scheme's ``Params``: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Name the scheme is registered under.")


def key_seed(key: bytes, purpose: str) -> int:
    """A 63-bit seed derived from the secret key for one named use (independent uses, one key)."""
    digest = hashlib.sha256(key + b"\x00" + purpose.encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def key_generator(key: bytes, purpose: str) -> torch.Generator:
    """A CPU generator seeded from the key for one named use."""
    return torch.Generator().manual_seed(key_seed(key, purpose))


class OwnerPool:
    """Natural images the owner may turn into secrets, in a key-seeded order; ``take`` hands out
    disjoint slices, so trigger images never overlap the owner's clean set or each other."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x, y
        self.taken = 0

    def take(self, n: int) -> tuple[Tensor, Tensor]:
        """The next ``n`` images and their true labels; ValueError when the pool is exhausted."""
        if self.taken + n > len(self.y):
            raise ValueError(f"the owner's pool holds {len(self.y)} images, {self.taken + n} were asked for")
        part = slice(self.taken, self.taken + n)
        self.taken += n
        return self.x[part], self.y[part]


class Watermark(ABC):
    """A watermarking scheme: secret creation, an embedding loss term and verification.

    Parameters
    ----------
    params : WatermarkParams
        The scheme's validated parameters.
    num_classes : int
        Classes C of the task the model solves.
    """

    Params: ClassVar[type[WatermarkParams]]
    statistic: ClassVar[str]  # "match", "ber" or "wdr" (see Verdict)
    embeds_on_ciphertexts: ClassVar[bool] = False
    """Whether, under encryption, the owner embeds and verifies on the encrypted layer
    :meth:`ciphertext_layer` names (:meth:`embed_encrypted`) instead of on a decrypted model."""

    def __init__(self, params: WatermarkParams, num_classes: int) -> None:
        self.params = params
        self.num_classes = num_classes

    @abstractmethod
    def create(self, key: bytes, pool: OwnerPool, model: nn.Module) -> Secrets:
        """Draw the secrets from ``key`` (and natural images from ``pool``) for models shaped like ``model``."""

    @abstractmethod
    def loss(self, model: nn.Module, secrets: Secrets, generator: torch.Generator, batch_size: int) -> Tensor:
        """The watermark term of one embedding step (added to the clean cross-entropy); ``batch_size``
        triggers per step for trigger-set schemes."""

    @abstractmethod
    def answers(self, model: nn.Module, secrets: Secrets) -> tuple[Tensor, float]:
        """Which secret answers the model gives (bool, one per trigger or bit) and the probability
        that a model without the watermark gives each one by chance."""

    def check(self, model: nn.Module, ciphertext_slots: int | None) -> list[str]:
        """Why the parameters do not fit ``model``: one line each, naming the parameter; empty when
        they fit. ``ciphertext_slots``: values one ciphertext holds when the run is encrypted (None
        otherwise), which the layer :meth:`ciphertext_layer` names must fit in."""
        layer = None if ciphertext_slots is None else self.ciphertext_layer(model)
        if layer is None:
            return []
        size = dict(model.named_parameters())[layer].numel()
        if size <= ciphertext_slots:
            return []
        return [f"layer: {layer} has {size} values, more than one ciphertext holds ({ciphertext_slots}); choose a "
                "smaller layer or a larger encryption.poly_modulus_degree"]

    def marked_layer(self, model: nn.Module) -> str | None:
        """The weight of ``model`` whose values carry the watermark (another mark there, such as a
        client's fingerprint, would overwrite it); None when the mark lives in the model's answers.
        By default the layer marked on ciphertexts."""
        return self.ciphertext_layer(model)

    def ciphertext_layer(self, model: nn.Module) -> str | None:
        """The parameter of ``model`` the scheme marks on ciphertexts (one ciphertext of its own);
        None for schemes that do not (:attr:`embeds_on_ciphertexts` False)."""
        return None

    def embed(self, model: nn.Module, secrets: Secrets, clean_x: Tensor, clean_y: Tensor,
              settings: EmbeddingConfig, generator: torch.Generator) -> int:
        """Embed ``secrets`` into ``model`` in place; returns the steps taken. By default the owner
        fine-tunes on its clean images (uint8 ``clean_x``, labels ``clean_y``) plus :meth:`loss`."""
        return fine_tune(model, self, secrets, clean_x, clean_y, settings, generator).steps

    def embed_encrypted(self, layer: ts.CKKSVector, secrets: Secrets, key: Decryptor,
                        settings: EmbeddingConfig | None, false_alarm: float) -> tuple[ts.CKKSVector, int, Verdict]:
        """:meth:`embed` (unless ``settings`` is None), then :meth:`verify`, on the encrypted layer of
        :meth:`ciphertext_layer` with the public context only; ``key`` (the key authority's embedder
        grant) decrypts the detector outputs alone. Returns the new layer, the steps taken and the
        verdict. Only schemes with :attr:`embeds_on_ciphertexts` implement it."""
        raise TypeError(f"{self.params.name} does not embed on ciphertexts")

    def public(self, secrets: Secrets) -> dict[str, list[str]]:
        """What may be published about the secrets without revealing them (e.g. commitments)."""
        return {}

    def score(self, model: nn.Module, secrets: Secrets) -> float:
        """Share of secret answers matched (0..1): trigger accuracy or 1 − BER; embedding stops at a target."""
        correct, _ = self.answers(model, secrets)
        return correct.float().mean().item()

    def verify(self, model: nn.Module, secrets: Secrets, false_alarm: float = 1e-6) -> Verdict:
        """Count matches and turn them into a binomial p-value; verified when it is at most ``false_alarm``."""
        correct, chance = self.answers(model, secrets)
        return self.verdict(correct, chance, false_alarm)

    def verdict(self, correct: Tensor, chance: float, false_alarm: float) -> Verdict:
        """The binomial verdict on which secret answers were matched (bool), each by chance with ``chance``."""
        return Verdict.binomial(self.statistic, int(correct.sum()), correct.numel(), chance, false_alarm)


WATERMARKS: Registry[type[Watermark]] = Registry("watermark scheme")
