"""Defenses that run on ciphertexts (norm clipping, Krum, Multi-Krum, FLAME, DP noise, FedAvg)."""

from __future__ import annotations

from fedsec.crypto.defenses import dp_noise, fedavg, flame, krum, norm_clipping  # noqa: F401 (registration)
from fedsec.crypto.defenses.base import HE_STAGES, EncryptedScalars, ScalarBatch
from fedsec.crypto.defenses.pipeline import run_encrypted_pipeline

__all__ = ["HE_STAGES", "EncryptedScalars", "ScalarBatch", "run_encrypted_pipeline"]
