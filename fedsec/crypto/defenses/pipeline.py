"""A scenario's defense stages run on ciphertexts, in order."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from fedsec.crypto.defenses.base import HE_STAGES, EncryptedScalars, ScalarBatch
from fedsec.defenses.base import Defense


def run_encrypted_pipeline(
    stages: Sequence[Defense], scalars: EncryptedScalars, weights: Tensor, d: int,
    generator: torch.Generator | None = None,
) -> ScalarBatch:
    """The decisions of ``stages`` (plaintext stage objects: names and parameters) on encrypted rows.

    Returns the final batch: ``final_coefficients()`` gives the aggregate's coefficient of
    every encrypted update, ``noise`` the plaintext noise to add. KeyError for a stage with
    no encrypted version (the scenario check rejects those first); BelowMinimum, before any
    further scalar is decrypted, when a stage is left fewer accepted rows than it needs
    (the plaintext stage's :meth:`~fedsec.defenses.Defense.check_minimum`).
    """
    n = weights.numel()
    batch = ScalarBatch(
        scalars=scalars, weights=weights.double().cpu(), accepted=torch.ones(n, dtype=torch.bool),
        scale=torch.ones(n, dtype=torch.float64), d=d, generator=generator,
    )
    for stage in stages:
        stage.check_minimum(int(batch.accepted.sum()))
        batch = HE_STAGES[stage.name](batch, stage.params, stage.name)
    return batch
