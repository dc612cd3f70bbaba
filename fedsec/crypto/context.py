"""CKKS parameters chosen from what a scenario's encrypted operations need, and the context."""

from __future__ import annotations

from dataclasses import dataclass

import tenseal as ts

from fedsec.crypto.config import EncryptionConfig

MAX_MODULUS_BITS = {8192: 218, 16384: 438, 32768: 881}
"""Largest total coefficient modulus (bits) for 128-bit security, by ring degree (SEAL's table)."""

SPECIAL_PRIME_BITS = 60
"""First prime (holds the integer part of decrypted values) and last (key switching), in bits."""


@dataclass(frozen=True)
class Needs:
    """What the encrypted operations of a run require of the context.

    Attributes
    ----------
    depth : int
        Multiplications in a row (ciphertext x ciphertext or x plaintext) before a
        decryption or refresh; each costs one level of the modulus chain.
    rotations : bool
        Whether slots are summed or rotated (scalar products, norms): needs Galois keys.
    """

    depth: int
    rotations: bool


@dataclass(frozen=True)
class CkksParameters:
    """A resolved CKKS parameter set.

    Attributes
    ----------
    poly_modulus_degree : int
        Ring degree N; one ciphertext packs N/2 real values (slots).
    coeff_mod_bit_sizes : tuple[int, ...]
        Modulus chain in bits; its length minus 2 is the multiplicative depth.
    scale_bits : int
        Encoding scale 2^scale_bits.
    galois_keys : bool
        Whether rotation keys are generated (they make the public context ~30x larger).
    """

    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int
    galois_keys: bool

    @property
    def slots(self) -> int:
        """Values per ciphertext (N/2)."""
        return self.poly_modulus_degree // 2

    @property
    def depth(self) -> int:
        """Multiplications the chain allows before decryption."""
        return len(self.coeff_mod_bit_sizes) - 2


def ckks_parameters(config: EncryptionConfig, needs: Needs) -> CkksParameters:
    """The shortest chain (and smallest N) that gives ``needs.depth`` levels, unless the config
    fixes them; ValueError when a fixed chain is too short or too long for N. Depth 0 (additions
    only) is ``[60, 60]``: one 60-bit prime holds the values at scale 2^40, the other is for
    key switching."""
    scale = config.global_scale_bits
    if config.coeff_mod_bit_sizes == "auto":
        chain = (SPECIAL_PRIME_BITS, *([scale] * needs.depth), SPECIAL_PRIME_BITS)
    else:
        chain = tuple(config.coeff_mod_bit_sizes)
        if len(chain) - 2 < needs.depth:
            raise ValueError(
                f"encryption.coeff_mod_bit_sizes: {list(chain)} allows depth {len(chain) - 2}, "
                f"the scenario's operations need {needs.depth}"
            )
    total = sum(chain)
    if config.poly_modulus_degree is not None:
        degree = config.poly_modulus_degree
        if total > MAX_MODULUS_BITS[degree]:
            raise ValueError(
                f"encryption.poly_modulus_degree: {degree} allows {MAX_MODULUS_BITS[degree]} modulus bits, "
                f"the chain {list(chain)} has {total}"
            )
    else:
        degree = min(n for n, bits in MAX_MODULUS_BITS.items() if bits >= total)
    return CkksParameters(degree, chain, scale, needs.rotations)


def make_context(params: CkksParameters) -> ts.Context:
    """A fresh private CKKS context (secret key included) for ``params``."""
    context = ts.context(
        ts.SCHEME_TYPE.CKKS, params.poly_modulus_degree, coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes)
    )
    context.global_scale = 2.0**params.scale_bits
    if params.galois_keys:
        context.generate_galois_keys()
    return context
