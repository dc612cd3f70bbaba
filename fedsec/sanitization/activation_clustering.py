"""Activation clustering (Chen et al. 2018): per class, reduce the penultimate activations to a
few dimensions (ICA in the paper, PCA as an option), split them by 2-means, and flag the smaller
cluster when it holds less than ``size_threshold`` of the class (the paper's relative-size rule) or,
with the silhouette rule, only when the split is also cohesive."""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from fedsec.sanitization.base import SANITIZERS, Sanitizer, SanitizerParams


def reduce_dimensions(features: np.ndarray, components: int, method: str, seed: int) -> np.ndarray:
    """``features`` (n, d) projected to ``components`` dimensions by FastICA (``ica``) or PCA
    (``pca``); unchanged when d is already at most ``components``."""
    from sklearn.decomposition import PCA, FastICA

    if features.shape[1] <= components:
        return features
    if method == "pca":
        return PCA(n_components=components, random_state=seed).fit_transform(features)
    with warnings.catch_warnings():  # FastICA warns when it stops at max_iter; the projection is still usable
        warnings.simplefilter("ignore")
        return FastICA(n_components=components, max_iter=1000, tol=0.005, random_state=seed).fit_transform(features)


def two_means(reduced: np.ndarray, seed: int) -> np.ndarray:
    """Cluster ids (0/1) of each row of ``reduced`` by k-means with k = 2."""
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(reduced)


def smaller_cluster(clusters: np.ndarray, size_threshold: float) -> np.ndarray:
    """Rows of the cluster holding less than ``size_threshold`` of the class (shares rounded to two
    decimals, as the reference implementation does): bool (n,); none when neither is that small."""
    shares = np.round(np.bincount(clusters, minlength=2) / len(clusters), 2)
    return np.isin(clusters, np.flatnonzero(shares < size_threshold))


@SANITIZERS.register("activation-clustering")
class ActivationClustering(Sanitizer):
    """Flags, class by class, a small and separate cluster of penultimate activations."""

    class Params(SanitizerParams):
        name: Literal["activation-clustering"] = "activation-clustering"
        components: int = Field(10, ge=1, le=1024, description="Dimensions the activations are reduced to (10 in the paper).")
        reduction: Literal["ica", "pca"] = Field(
            "ica", description="ica: FastICA, as in the paper; pca: principal components (an option).")
        rule: Literal["relative-size", "silhouette"] = Field(
            "relative-size", description="relative-size: flag the smaller cluster when it holds less than "
            "size_threshold of the class (the paper's default); silhouette: also require the class's "
            "silhouette score to exceed silhouette_threshold.")
        size_threshold: float = Field(
            0.35, gt=0, le=0.5, description="Share (0..0.5] of a class below which a cluster is suspiciously small.")
        silhouette_threshold: float = Field(
            0.10, ge=-1, le=1, description="Silhouette score (-1..1) above which the 2-means split is taken as "
            "real (silhouette rule only).")

    params: Params

    def min_class_rows(self) -> int:
        return max(3, self.params.components + 1)

    def flag_class(self, features: Tensor, seed: int) -> Tensor:
        from sklearn.metrics import silhouette_score

        p = self.params
        seed %= 2**32
        reduced = reduce_dimensions(features.cpu().numpy(), p.components, p.reduction, seed)
        clusters = two_means(reduced, seed)
        flagged = smaller_cluster(clusters, p.size_threshold)
        if p.rule == "silhouette" and flagged.any() and silhouette_score(reduced, clusters) <= p.silhouette_threshold:
            flagged[:] = False
        return torch.from_numpy(flagged)
