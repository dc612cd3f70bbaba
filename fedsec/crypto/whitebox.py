"""White-box watermark under CKKS, after FedCrypt (Lansari et al.): a detector with a polynomial
activation, embedded by homomorphic gradient steps on the encrypted target layer.

Detector: ``y = p(A w)`` with the secret projection ``A`` (T, L), the target layer ``w`` (L,)
and ``p(z) = 0.09 z^2 + 0.5 z + 0.47`` (a ReLU approximation); bit k reads ``y_k > 0.5``.
Embedding minimises ``1/2 sum_k (p(z_k) - b_k)^2`` by steps ``w <- w - lr A^T [(p(z) - b) p'(z)]``.
With ``u = 0.3 z`` the step is ``e = u^2 + 5/3 u + 0.47 - b``, ``g = e (0.6 u + 0.5)``: one
plaintext product and two ciphertext products (depth 3). TenSEAL's vector-matrix product needs
its input replicated over the slots, which a product's output is not, so the key authority
refreshes ``g`` (T values) before ``lr A^T g`` (one more level), and ``w`` after the step
(both logged; the server sees ciphertexts only). Verification decrypts the T detector
outputs only. :class:`MirrorEmbedder` runs the same arithmetic in float64 torch
(``encryption: simulated``); :class:`EncryptedEmbedder` runs it on ciphertexts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tenseal as ts
import torch

from fedsec.crypto.context import Needs
from fedsec.crypto.key_authority import KeyAuthority

STEP_NEEDS = Needs(depth=3, rotations=True)
"""What one homomorphic embedding step needs of the context."""

U_SCALE = 0.3
"""u = 0.3 z turns 0.09 z^2 into u^2 (no extra plaintext product)."""


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
    def random(cls, bits: int, layer_size: int, seed: int) -> Detector:
        """A (T, L) Gaussian projection scaled by 1/sqrt(L) and T random bits, from ``seed``."""
        g = torch.Generator().manual_seed(seed)
        projection = torch.randn(bits, layer_size, generator=g, dtype=torch.float64) / layer_size**0.5
        return cls(projection, torch.randint(0, 2, (bits,), generator=g).double())

    def verdict(self, outputs: torch.Tensor) -> dict[str, float]:
        """WDR (fraction of bits read correctly) and BER of detector outputs ``y`` (T,)."""
        wdr = float(((outputs > 0.5).double() == self.bits).double().mean())
        return {"wdr": wdr, "ber": 1.0 - wdr}


class MirrorEmbedder:
    """The embedding and verification arithmetic in float64 torch (no encryption)."""

    def __init__(self, detector: Detector, lr: float) -> None:
        self.detector = detector
        self.lr = lr

    def outputs(self, layer: torch.Tensor) -> torch.Tensor:
        """Detector outputs ``p(A w)``, (T,)."""
        u = (U_SCALE * self.detector.projection) @ layer.double()
        return u * u + u / U_SCALE * 0.5 + 0.47

    def step(self, layer: torch.Tensor) -> torch.Tensor:
        """One gradient step on the detector loss; the new layer (L,) float64."""
        a, b = self.detector.projection, self.detector.bits
        u = (U_SCALE * a) @ layer.double()
        error = u * u + (0.5 / U_SCALE) * u + (0.47 - b)
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
    authority : KeyAuthority
        Refreshes the layer after each step (the chain is spent) and decrypts detector outputs.
    requester : str
        Who asks the authority (logged).
    """

    def __init__(self, detector: Detector, lr: float, authority: KeyAuthority, requester: str = "server") -> None:
        self.detector = detector
        self.lr = lr
        self.authority = authority
        self.requester = requester
        a = detector.projection.numpy()
        self._forward = (U_SCALE * a).T.tolist()  # (L, T): layer . matrix -> u
        self._backward = (lr * a).tolist()  # (T, L): g . matrix -> lr A^T g
        self._shift = (0.47 - detector.bits.numpy()).tolist()

    def outputs(self, layer: ts.CKKSVector, why: str) -> torch.Tensor:
        """Detector outputs, computed on ciphertexts; only these T values are decrypted."""
        u = layer.mm(self._forward)
        y = u * u + u * (0.5 / U_SCALE) + 0.47
        (values,) = self.authority.decrypt([y], "white-box detector outputs", why, self.requester)
        return torch.from_numpy(values)

    def step(self, layer: ts.CKKSVector) -> ts.CKKSVector:
        """One homomorphic gradient step, then a refresh through the key authority."""
        u = layer.mm(self._forward)
        error = u * u + u * (0.5 / U_SCALE) + self._shift
        slope = u * (2 * 0.09 / U_SCALE) + 0.5
        (gradient,) = self.authority.refresh(
            [error * slope], "white-box detector gradient", "re-encode before A^T g", self.requester
        )
        updated = layer - gradient.mm(self._backward)
        (fresh,) = self.authority.refresh(
            [updated], "white-box target layer", "modulus chain spent after a watermark step", self.requester
        )
        return fresh


def embed_and_verify(layer: torch.Tensor, detector: Detector, lr: float, steps: int,
                     authority: KeyAuthority | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Embed by ``steps`` steps and verify; encrypted when ``authority`` is given, else the mirror.

    Returns the new layer (decrypted by the key holder in the encrypted case, for the model
    owner's use) and the verdict.
    """
    if authority is None:
        mirror = MirrorEmbedder(detector, lr)
        for _ in range(steps):
            layer = mirror.step(layer)
        return layer, detector.verdict(mirror.outputs(layer))
    embedder = EncryptedEmbedder(detector, lr, authority)
    encrypted = ts.ckks_vector(authority.public_context(), layer.double().tolist())
    for _ in range(steps):
        encrypted = embedder.step(encrypted)
    verdict = detector.verdict(embedder.outputs(encrypted, "watermark verification"))
    (values,) = authority.decrypt([encrypted], "white-box target layer", "owner's copy", "owner")
    return torch.from_numpy(np.asarray(values)), verdict
