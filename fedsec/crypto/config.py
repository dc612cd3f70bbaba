"""The scenario's ``encryption`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class EncryptionConfig(BaseModel):
    """Whether and how updates and the global model are encrypted (CKKS through TenSEAL).

    ``ckks``: the server only holds ciphertexts and a public context; ``simulated``: the
    federation runs in the clear under the same rules (only defenses with an encrypted version)
    and the white-box watermark runs the float64 mirror of its homomorphic steps: the same
    arithmetic without keys or ciphertexts, for experiments too large for CKKS.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True)

    mode: Literal["off", "ckks", "simulated"] = Field(
        "off", description="off; ckks: the server holds ciphertexts and a public context only; simulated: "
        "a plaintext run under ckks's rules, white-box watermark steps by their float64 mirror.")
    poly_modulus_degree: Literal[8192, 16384, 32768] | None = Field(
        None,
        description="CKKS ring degree N (a ciphertext holds N/2 values); default: the smallest "
        "that fits the modulus chain.",
    )
    coeff_mod_bit_sizes: Literal["auto"] | list[int] = Field(
        "auto",
        description="Modulus chain in bits, e.g. [60, 40, 60]; auto: the shortest chain the "
        "scenario's operations need (one 40-bit level per multiplication depth; [60, 60] for FedAvg's additions).",
    )
    global_scale_bits: int = Field(40, ge=20, le=60, description="CKKS scale 2^bits of encoded values.")

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        return "off" if value is False else value  # YAML 1.1 reads an unquoted off as false

    @model_validator(mode="after")
    def _chain(self) -> EncryptionConfig:
        chain = self.coeff_mod_bit_sizes
        if chain != "auto":
            if len(chain) < 2:
                raise ValueError("coeff_mod_bit_sizes: give at least 2 primes (e.g. [60, 40, 60])")
            if not all(20 <= bits <= 60 for bits in chain):
                raise ValueError(f"coeff_mod_bit_sizes: every prime must have 20..60 bits, got {chain}")
        return self

    @property
    def enabled(self) -> bool:
        """True when the server works on ciphertexts."""
        return self.mode == "ckks"

