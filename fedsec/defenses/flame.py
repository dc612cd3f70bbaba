"""FLAME (Nguyen et al., USENIX Security 2022): cluster, clip, then noise."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from fedsec.defenses._math import clip_factors, cosine_similarity_matrix, gaussian_like, row_norms
from fedsec.defenses.base import Decision, Defense, DefenseParams, Kind, UpdateBatch, register


@register("flame")
class Flame(Defense):
    """Keep the largest HDBSCAN cluster of cosine distances, clip to the median norm, add noise.

    1. HDBSCAN (``min_cluster_size = n // 2 + 1``, ``min_samples = 1``, single cluster
       allowed) on the pairwise cosine distances ``1 - cos`` of the local models
       ``w_global + update`` (as in the paper; ``distance: updates`` clusters the updates); rows
       outside the majority cluster are rejected. scikit-learn counts as members of a
       single cluster only its densest ~n/2 + 1 rows; a second pass with
       ``cluster_selection_epsilon`` = that core's diameter admits the rows linked to
       it by no longer distances, so honest stragglers stay while a separated minority
       does not. When HDBSCAN finds no cluster, no row is rejected
       (``info["flame.no_cluster"] = 1``).
    2. ``S`` = median L2 norm of all rows; kept rows are scaled to norm <= S.
    3. Unweighted mean of the kept rows plus N(0, (lambda S)^2 I) drawn from the
       batch's generator.

    Between local models, the cosine distance of two rows grows with the part of their
    updates orthogonal to the global model, norm included: a boosted backdoor update
    stands out even when honest non-IID updates are nearly orthogonal to each other (on
    Fashion-MNIST, Dirichlet 0.5, update cosines missed single boosted attackers that
    model cosines caught). Score: each row's median cosine distance to the others.
    """

    kind = Kind.AGGREGATE

    class Params(DefenseParams):
        noise_lambda: float = Field(
            0.001, ge=0.0, description="Noise std as a multiple of the median update norm."
        )
        distance: Literal["models", "updates"] = Field(
            "models", description="Cluster the cosine distances of local models (w_global + update) or of updates."
        )

    params: Params

    def minimum_rows(self) -> int:
        """2: FLAME's filter is HDBSCAN with ``min_cluster_size = n // 2 + 1`` (Nguyen et al.),
        which scikit-learn requires to be at least 2."""
        return 2

    def decide(self, batch: UpdateBatch) -> Decision:
        rows = batch.updates
        points = rows + batch.global_vector if self.params.distance == "models" else rows
        distance = (1.0 - cosine_similarity_matrix(points)).clamp_min_(0.0).fill_diagonal_(0.0)
        score = distance.median(dim=1).values
        keep, clustered = self._majority_cluster(distance)
        norms = row_norms(rows)
        bound = norms.median()
        coefficients = keep * clip_factors(norms, bound) / keep.sum().clamp_min(1)
        aggregate = coefficients.to(rows.dtype) @ rows
        std = self.params.noise_lambda * bound
        if self.params.noise_lambda > 0:
            generator = batch.require_generator(self.name)
            aggregate = aggregate + gaussian_like(aggregate, std, generator)
        info = {"clip_bound": float(bound), "std": float(std), "no_cluster": float(not clustered)}
        return Decision(aggregate=aggregate, keep=keep, score=score, info=info)

    @staticmethod
    def _majority_cluster(distance: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """Mask of the majority HDBSCAN cluster of the (n, n) distances (n >= 2), and whether
        one exists (all rows when none does)."""
        # The one place a (small) n x n matrix leaves the device: HDBSCAN is numpy-only.
        matrix = distance.double().cpu().numpy()
        core = _largest_cluster(matrix, epsilon=0.0)
        if core is None:
            return torch.ones(distance.shape[0], dtype=torch.bool, device=distance.device), False
        # With one cluster, scikit-learn labels as members only its densest rows (those
        # still in it at its last split, about n/2 + 1). Rows that join it through links
        # no longer than the core's diameter belong to it too (cluster_selection_epsilon).
        diameter = float(matrix[np.ix_(core, core)].max())
        wider = _largest_cluster(matrix, epsilon=diameter) if diameter > 0 else None
        if wider is not None:
            core = wider
        return torch.from_numpy(core).to(distance.device), True


def _largest_cluster(distance: np.ndarray, epsilon: float) -> np.ndarray | None:
    """Mask of the largest HDBSCAN cluster (FLAME's settings) of a precomputed (n, n) matrix."""
    from sklearn.cluster import HDBSCAN  # imported here: scikit-learn adds seconds to every CLI start

    clusterer = HDBSCAN(
        min_cluster_size=distance.shape[0] // 2 + 1,
        min_samples=1,
        metric="precomputed",
        allow_single_cluster=True,
        cluster_selection_epsilon=epsilon,
        copy=True,
    )
    labels = clusterer.fit_predict(distance)
    if (labels < 0).all():
        return None
    return labels == np.bincount(labels[labels >= 0]).argmax()
