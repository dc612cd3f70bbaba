"""Agreement with IBM ART 1.20.1's SpectralSignatureDefense and ActivationDefence on the same features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from art.defences.detector.poison.activation_defence import cluster_activations
from art.defences.detector.poison.activation_defence import reduce_dimensionality as art_reduce
from art.defences.detector.poison.clustering_analyzer import ClusteringAnalyzer
from art.defences.detector.poison.spectral_signature_defense import SpectralSignatureDefense

from fedsec.sanitization import build_sanitizer
from fedsec.sanitization.activation_clustering import reduce_dimensions, smaller_cluster, two_means
from fedsec.sanitization.spectral_signatures import spectral_signature_scores
from test_sanitizers import planted


def art_spectral_flags(features: np.ndarray, labels: np.ndarray, share: float) -> np.ndarray:
    """ART's per-class rule of SpectralSignatureDefense.detect_poison, on given features."""
    flagged = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        score = SpectralSignatureDefense.spectral_signature_scores(features[rows])[:, 0]
        flagged[rows] = score >= np.quantile(score, max(1 - share, 0.0))
    return flagged


def test_spectral_signatures_agree_with_art_on_centred_features() -> None:
    """ART projects the raw features (the paper: the centred ones); on class-centred features the
    two coincide: ART's score is the square root of ours and the removed rows are the same."""
    features, labels, _ = planted()
    for c in range(3):
        features[labels == c] -= features[labels == c].mean(0)
    ours = build_sanitizer({"name": "spectral-signatures", "expected_poison_fraction": 0.1}).flag(features, labels, 0)
    theirs = art_spectral_flags(features.double().numpy(), labels.numpy(), 0.15)
    assert np.array_equal(ours.numpy(), theirs)
    class_rows = (labels == 0).numpy()
    art_scores = SpectralSignatureDefense.spectral_signature_scores(features.double().numpy()[class_rows])[:, 0]
    assert np.allclose(spectral_signature_scores(features.double()[class_rows]).numpy(), art_scores ** 2)


def test_activation_clustering_pca_path_agrees_with_art() -> None:
    features, labels, _ = planted()
    ours = build_sanitizer({"name": "activation-clustering", "reduction": "pca"}).flag(features, labels, 0).numpy()
    by_class = [features.double().numpy()[labels.numpy() == c] for c in range(3)]
    np.random.seed(0)
    clusters, _ = cluster_activations(by_class, nb_clusters=2, nb_dims=10, reduce="PCA")
    clean, _, _ = ClusteringAnalyzer().analyze_by_relative_size(clusters, size_threshold=0.35)
    theirs = ~np.concatenate([np.asarray(c, dtype=bool) for c in clean])
    assert np.array_equal(ours, theirs)


def test_ica_reduction_and_relative_size_rule_agree_with_art() -> None:
    """The same FastICA projection from the same random state, and the same clusters flagged."""
    features, labels, _ = planted(num_classes=1)
    x = features.double().numpy()
    np.random.seed(7)
    theirs = art_reduce(x, nb_dims=10, reduce="FastICA")
    assert np.allclose(reduce_dimensions(x, 10, "ica", 7), theirs)
    clusters = two_means(theirs, 0)
    clean, _, _ = ClusteringAnalyzer().analyze_by_relative_size([clusters], size_threshold=0.35)
    assert np.array_equal(smaller_cluster(clusters, 0.35), ~np.asarray(clean[0], dtype=bool))
