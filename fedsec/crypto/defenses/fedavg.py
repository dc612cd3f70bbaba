"""FedAvg on ciphertexts: the example-weighted mean of the accepted rows."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fedsec.crypto.defenses.base import ScalarBatch, he_stage


@he_stage("fedavg")
def fedavg(batch: ScalarBatch, params: Any, name: str) -> ScalarBatch:
    """Coefficients ``n_i / sum_j n_j`` over accepted rows; no scalar is decrypted."""
    return replace(batch, coefficients=batch.mean_coefficients())
