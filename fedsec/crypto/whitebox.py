"""White-box watermark under CKKS, after FedCrypt (Lansari et al.): a detector with a polynomial
activation, embedded by homomorphic gradient steps on the encrypted target layer.

Detector: ``y = p(A w)`` with the secret projection ``A`` (T, L), the target layer ``w`` (L,)
and ``p(z) = 0.09 z^2 + 0.5 z + 0.47`` (a ReLU approximation); bit k reads ``y_k > 0.5``.
Embedding minimises ``1/2 sum_k (p(z_k) - t_k)^2`` by steps ``w <- w - lr A^T [(p(z) - t) p'(z)]``,
with targets ``t_k = 0.5 +- reach`` on bit k's side (not 0/1: the layer moves no further than the
verdict needs). With ``u = 0.3 z`` the step is ``e = u^2 + 5/3 u + 0.47 - t``,
``g = e (0.6 u + 0.5)``: one plaintext product and two ciphertext products (depth 3). Each
``u_k`` is a dot product of the layer with a row of ``0.3 A`` (one plaintext product and
log2(N/2) rotations, T of them: 7x faster than TenSEAL's vector-matrix product, which costs
about one rotation per layer value). The key authority packs the T gradient values into one
fresh ciphertext before ``lr A^T g`` (one more level) and refreshes ``w`` after the step (both
logged; the embedding party sees ciphertexts only). Verification decrypts the T detector
outputs only. :class:`MirrorEmbedder` runs the same arithmetic in float64 torch
(plaintext models: ``encryption: off`` or ``simulated``); :class:`EncryptedEmbedder` runs it
on ciphertexts with the public context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

import tenseal as ts
import torch

from fedsec.crypto.context import Needs
from fedsec.crypto.key_authority import Decryptor

STEP_NEEDS = Needs(depth=3, rotations=True)
"""What one homomorphic embedding step needs of the context."""

U_SCALE = 0.3
"""u = 0.3 z turns 0.09 z^2 into u^2 (no extra plaintext product)."""

Layer = TypeVar("Layer", torch.Tensor, ts.CKKSVector)


@dataclass(frozen=True)
class Detector:
    """The owner's detector secrets.

    Attributes
    ----------
    projection : Tensor
        (T, L) float64 secret matrix A.
    bits : Tensor
        (T,) float64 watermark bits in {0, 1}.
    """

    projection: torch.Tensor
    bits: torch.Tensor

    @classmethod
    def random(cls, bits: int, layer_size: int, generator: torch.Generator) -> Detector:
        """A (T, L) Gaussian projection scaled by 1/sqrt(L) and T random bits, drawn from ``generator``."""
        projection = torch.randn(bits, layer_size, generator=generator, dtype=torch.float64) / layer_size**0.5
        return cls(projection, torch.randint(0, 2, (bits,), generator=generator).double())

    def outputs(self, layer: torch.Tensor) -> torch.Tensor:
        """Detector outputs ``p(A w)`` of a plaintext layer (L,), (T,) float64."""
        u = (U_SCALE * self.projection) @ layer.double()
        return u * u + u / U_SCALE * 0.5 + 0.47

    def correct(self, outputs: torch.Tensor) -> torch.Tensor:
        """Which bits detector outputs ``y`` (T,) read correctly (bool)."""
        return (outputs > 0.5).double() == self.bits.to(outputs)

    def targets(self, reach: float) -> torch.Tensor:
        """Embedding targets ``0.5 +- reach`` on each bit's side, (T,) float64."""
        return 0.5 + (2 * self.bits - 1) * reach

    def settled(self, outputs: torch.Tensor, margin: float) -> bool:
        """Every output at least ``margin`` beyond 0.5 on its bit's side."""
        side = (outputs - 0.5) * (2 * self.bits.to(outputs) - 1)
        return bool((side >= margin).all())


class Embedder(Protocol[Layer]):
    """One embedding step and the detector outputs, on a plaintext or an encrypted layer."""

    def step(self, layer: Layer) -> Layer: ...

    def outputs(self, layer: Layer) -> torch.Tensor: ...


class MirrorEmbedder:
    """The embedding and verification arithmetic in float64 torch (no encryption).

    Parameters
    ----------
    detector : Detector
        Projection and bits.
    lr : float
        Step size.
    reach : float
        How far beyond 0.5 the steps push each output (0..0.5).
    """

    def __init__(self, detector: Detector, lr: float, reach: float) -> None:
        self.detector = detector
        self.lr = lr
        self.shift = 0.47 - detector.targets(reach)

    def outputs(self, layer: torch.Tensor) -> torch.Tensor:
        """Detector outputs ``p(A w)``, (T,)."""
        return self.detector.outputs(layer)

    def step(self, layer: torch.Tensor) -> torch.Tensor:
        """One gradient step on the detector loss; the new layer (L,) float64."""
        a = self.detector.projection
        u = (U_SCALE * a) @ layer.double()
        error = u * u + (0.5 / U_SCALE) * u + self.shift
        gradient = error * (2 * 0.09 / U_SCALE * u + 0.5)
        return layer.double() - (self.lr * a.T) @ gradient


class EncryptedEmbedder:
    """The same steps on an encrypted target layer, with only the public context.

    Parameters
    ----------
    detector : Detector
        Projection and bits (held by the embedding party).
    lr : float
        Step size.
    reach : float
        How far beyond 0.5 the steps push each output (0..0.5).
    key : Decryptor
        The key authority's grant to the embedder (scalars only): refreshes ciphertexts whose chain
        is spent and decrypts detector outputs (logged).
    """

    def __init__(self, detector: Detector, lr: float, reach: float, key: Decryptor) -> None:
        self.detector = detector
        self.lr = lr
        self.key = key
        a = detector.projection.cpu().numpy()
        self._rows = (U_SCALE * a).tolist()  # u_k = layer . rows[k]
        self._backward = (lr * a).tolist()  # (T, L): g . matrix -> lr A^T g
        self._shift = (0.47 - detector.targets(reach)).cpu().numpy().tolist()
        self._projected: tuple[ts.CKKSVector, list[ts.CKKSVector]] | None = None

    def _projections(self, layer: ts.CKKSVector) -> list[ts.CKKSVector]:
        # A check and the step after it project the same ciphertext: T dot products computed once.
        if self._projected is None or self._projected[0] is not layer:
            self._projected = (layer, [layer.dot(row) for row in self._rows])
        return self._projected[1]

    def outputs(self, layer: ts.CKKSVector) -> torch.Tensor:
        """Detector outputs, computed on ciphertexts; only these T values are decrypted."""
        outputs = [u * u + u * (0.5 / U_SCALE) + 0.47 for u in self._projections(layer)]
        values = self.key.decrypt(outputs, "white-box detector outputs")
        return torch.tensor([float(v[0]) for v in values], dtype=torch.float64)

    def step(self, layer: ts.CKKSVector) -> ts.CKKSVector:
        """One homomorphic gradient step, then a refresh through the key authority."""
        gradients = [
            (u * u + u * (0.5 / U_SCALE) + shift) * (u * (2 * 0.09 / U_SCALE) + 0.5)
            for u, shift in zip(self._projections(layer), self._shift, strict=True)
        ]
        gradient = self.key.refresh_packed(gradients, "white-box detector gradient, packed before A^T g")
        updated = layer - gradient.mm(self._backward)
        (fresh,) = self.key.refresh([updated], "white-box target layer, chain spent after a step")
        return fresh


def embed_layer(embedder: Embedder[Layer], detector: Detector, layer: Layer, max_steps: int,
                check_every: int, margin: float) -> tuple[Layer, int, torch.Tensor]:
    """Steps until every output is ``margin`` beyond 0.5 on its bit's side (checked every
    ``check_every`` steps) or ``max_steps`` were taken; (new layer, steps taken, its outputs)."""
    steps = 0
    while True:
        if steps % check_every == 0 or steps == max_steps:
            outputs = embedder.outputs(layer)
            if steps == max_steps or detector.settled(outputs, margin):
                return layer, steps, outputs
        layer = embedder.step(layer)
        steps += 1
