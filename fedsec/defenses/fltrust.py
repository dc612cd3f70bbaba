"""FLTrust (Cao et al., NDSS 2021): trust from agreement with the server's root-data update."""

from __future__ import annotations

import torch

from fedsec.defenses._math import TINY, row_norms
from fedsec.defenses.base import Decision, Defense, Kind, UpdateBatch, register


@register("fltrust")
class FLTrust(Defense):
    """Trust ``t_i = ReLU(cos(x_i, g0))``; result ``sum_i t_i |g0| x_i / |x_i| / sum_i t_i``.

    ``g0`` is ``UpdateBatch.server_update``, the update the server trained on its root
    data (the orchestrator supplies it; ValueError when missing). Rows with zero trust
    are rejected; with no trusted row the result is the zero update. Example counts are
    ignored. Score: the trust ``t_i`` in [0, 1]. No minimum beyond one row: trust comes
    from the root-data update, not from the other rows.
    """

    kind = Kind.AGGREGATE
    rows_reason = "training its root-data update on the plaintext global model"
    needs_root_data = True

    def decide(self, batch: UpdateBatch) -> Decision:
        reference = batch.server_update
        if reference is None:
            raise ValueError("fltrust needs UpdateBatch.server_update (the root-data update)")
        rows = batch.updates
        reference = reference.to(rows)
        norms = row_norms(rows).clamp_min(TINY)
        reference_norm = torch.linalg.vector_norm(reference)
        trust = torch.relu((rows @ reference) / (norms * reference_norm.clamp_min(TINY)))
        # Rescale every row to |g0| and weight it by its trust, in one product.
        coefficients = trust * reference_norm / norms / trust.sum().clamp_min(TINY)
        # Every row's part has norm t_i |g0| / sum t: its contribution is its trust.
        return Decision(aggregate=coefficients @ rows, keep=trust > 0, score=trust, contributions=trust)
