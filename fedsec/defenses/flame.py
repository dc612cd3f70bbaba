"""FLAME (Nguyen et al., USENIX Security 2022): cluster, clip, then noise."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from fedsec.defenses._math import TINY, clip_factors, cosine_similarity_matrix, gaussian_like, row_norms
from fedsec.defenses.base import Decision, Defense, DefenseParams, Kind, UpdateBatch, register
from fedsec.defenses.scalars import Scalar, ScalarBatch


@register("flame")
class Flame(Defense):
    """Keep the largest HDBSCAN cluster of cosine distances, clip to the median norm, add noise.

    1. HDBSCAN (``min_cluster_size = n // 2 + 1``, ``min_samples = 1``, single cluster
       allowed) on the pairwise cosine distances ``1 - cos`` of the local models
       ``w_global + update`` (as in the paper; ``distance: updates`` clusters the updates); rows
       outside the majority cluster are rejected. ``min_samples = 1`` and allowing a single
       cluster are this implementation's settings. One pass, as in the paper
       (``membership: hdbscan``): scikit-learn counts as members of a single cluster only
       its densest ~n/2 + 1 rows, so honest stragglers are rejected too.
       ``membership: widened`` adds a second pass with ``cluster_selection_epsilon`` = that
       core's diameter, which admits the rows linked to it by no longer distances, so
       honest stragglers stay while a separated minority does not (not in the paper).
       When HDBSCAN finds no cluster, no row is rejected (``info["flame.no_cluster"] = 1``).
    2. ``S`` = median L2 norm of all rows; kept rows are scaled to norm <= S.
    3. Unweighted mean of the kept rows plus N(0, (lambda S)^2 I) drawn from the
       batch's generator.

    Between local models, the cosine distance of two rows grows with the part of their
    updates orthogonal to the global model, norm included: a boosted backdoor update
    stands out even when honest non-IID updates are nearly orthogonal to each other (on
    Fashion-MNIST, Dirichlet 0.5, update cosines missed single boosted attackers that
    model cosines caught). Score: each row's median cosine distance to the others.

    Decides from the Gram matrix of the rows (and, between local models, their inner
    products with the global model), so it runs on ciphertexts; the noise is plaintext.
    """

    kind = Kind.AGGREGATE

    class Params(DefenseParams):
        noise_lambda: float = Field(
            0.001, ge=0.0, description="Noise std as a multiple of the median update norm."
        )
        distance: Literal["models", "updates"] = Field(
            "models", description="Cluster the cosine distances of local models (w_global + update) or of updates."
        )
        membership: Literal["hdbscan", "widened"] = Field(
            "hdbscan",
            description="Majority cluster: hdbscan = the members of one HDBSCAN pass (Nguyen et al.); widened = "
            "a second pass with cluster_selection_epsilon = the first cluster's diameter, which keeps honest "
            "rows the single pass leaves out (not in the paper).",
        )

    params: Params

    @property
    def widened(self) -> bool:
        """Whether the majority cluster is widened by a second HDBSCAN pass."""
        return self.params.membership == "widened"

    def minimum_rows(self) -> int:
        """2: FLAME's filter is HDBSCAN with ``min_cluster_size = n // 2 + 1`` (Nguyen et al.),
        which scikit-learn requires to be at least 2."""
        return 2

    def needs(self) -> frozenset[Scalar]:
        """The Gram matrix; between local models also the inner products with the global model."""
        if self.params.distance == "models":
            return frozenset({Scalar.GRAM, Scalar.GLOBAL_PRODUCTS})
        return frozenset({Scalar.GRAM})

    def decide(self, batch: UpdateBatch) -> Decision:
        rows = batch.updates
        points = rows + batch.global_vector if self.params.distance == "models" else rows
        distance = (1.0 - cosine_similarity_matrix(points)).clamp_min_(0.0).fill_diagonal_(0.0)
        norms = row_norms(rows)
        keep, clustered, bound, coefficients = _filter_and_clip(distance, norms, self.widened)
        aggregate = coefficients.to(rows.dtype) @ rows
        std = self.params.noise_lambda * bound
        if self.params.noise_lambda > 0:
            generator = batch.require_generator(self.name)
            aggregate = aggregate + gaussian_like(aggregate, std, generator)
        info = {"clip_bound": float(bound), "std": float(std), "no_cluster": float(not clustered)}
        return Decision(aggregate=aggregate, keep=keep, score=distance.median(dim=1).values, info=info,
                        contributions=coefficients * norms)

    def on_scalars(self, batch: ScalarBatch) -> ScalarBatch:
        """Cosine distances from the Gram matrix (of local models ``w + x_i``:
        ``x_i.x_j + x_i.w + x_j.w + w.w``), then the same cluster, clip and noise."""
        index = batch.accepted.nonzero().squeeze(1)
        if index.numel() == 0:
            return replace(batch, coefficients=torch.zeros_like(batch.weights))
        gram = batch.gram(index)
        if self.params.distance == "models":
            products = batch.scalars.global_products()
            with_global = products[index] * batch.scale[index]
            gram = gram + with_global.unsqueeze(0) + with_global.unsqueeze(1) + products[-1]
        inv = gram.diagonal().clamp_min(0.0).sqrt().clamp_min(TINY).reciprocal()
        cos = (gram * inv.unsqueeze(0) * inv.unsqueeze(1)).clamp(-1.0, 1.0)
        distance = (1.0 - (cos + cos.T) / 2.0).clamp_min(0.0).fill_diagonal_(0.0)
        keep, clustered, bound, kept_coefficients = _filter_and_clip(distance, batch.norms(index), self.widened)
        coefficients = torch.zeros_like(batch.weights)
        coefficients[index] = kept_coefficients
        accepted = torch.zeros_like(batch.accepted)
        accepted[index] = keep
        std = self.params.noise_lambda * float(bound)
        info = {**batch.info, f"{self.name}.clip_bound": float(bound), f"{self.name}.std": std,
                f"{self.name}.no_cluster": float(not clustered)}
        batch = replace(batch, accepted=accepted, coefficients=coefficients, info=info)
        batch = batch.with_score(self.name, index, distance.median(dim=1).values)
        return batch.with_noise(std) if self.params.noise_lambda > 0 else batch


def _filter_and_clip(distance: Tensor, norms: Tensor, widened: bool) -> tuple[Tensor, bool, Tensor, Tensor]:
    """FLAME's filter and clipping of k rows from their (k, k) cosine distances and (k,) norms.

    Returns the majority-cluster mask, whether a cluster was found, the clip bound (the
    median norm) and each row's coefficient in the aggregate (clip factor over the number of
    kept rows; 0 for rejected rows).
    """
    keep, clustered = majority_cluster(distance, widened)
    bound = norms.median()
    coefficients = keep * clip_factors(norms, bound) / keep.sum().clamp_min(1)
    return keep, clustered, bound, coefficients


def majority_cluster(distance: Tensor, widened: bool) -> tuple[Tensor, bool]:
    """Mask of the majority HDBSCAN cluster of the (n, n) distances (n >= 2), and whether
    one exists (all rows when none does); ``widened`` adds the second pass."""
    # The one place a (small) n x n matrix leaves the device: HDBSCAN is numpy-only.
    matrix = distance.double().cpu().numpy()
    core = _largest_cluster(matrix, epsilon=0.0)
    if core is None:
        return torch.ones(distance.shape[0], dtype=torch.bool, device=distance.device), False
    if widened:
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
