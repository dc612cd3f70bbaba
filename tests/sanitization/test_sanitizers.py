"""Sanitizers on synthetic feature sets: planted outliers are removed, clean rows mostly kept."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsec.models import output_layer
from fedsec.sanitization import build_sanitizer, penultimate_features
from fedsec.sanitization.spectral_signatures import spectral_signature_scores


def planted(num_classes: int = 3, clean: int = 180, poisons: int = 20, dim: int = 32, seed: int = 0):
    """Per class, ``clean`` Gaussian rows around a class centre and ``poisons`` rows shifted along a
    common direction (poisons look alike and unlike their class, as triggered examples do)."""
    g = torch.Generator().manual_seed(seed)
    shift = torch.randn(dim, generator=g)
    shift = 6 * shift / shift.norm()
    xs, ys, marks = [], [], []
    for c in range(num_classes):
        centre = 4 * torch.randn(dim, generator=g)
        xs += [centre + torch.randn(clean, dim, generator=g), centre + shift + torch.randn(poisons, dim, generator=g)]
        ys.append(torch.full((clean + poisons,), c))
        marks += [torch.zeros(clean, dtype=torch.bool), torch.ones(poisons, dtype=torch.bool)]
    return torch.cat(xs), torch.cat(ys), torch.cat(marks)


@pytest.mark.parametrize("spec", [
    {"name": "spectral-signatures", "expected_poison_fraction": 0.1},
    {"name": "activation-clustering", "components": 2},
    {"name": "activation-clustering", "reduction": "pca"},
    {"name": "activation-clustering", "reduction": "pca", "rule": "silhouette"},
])
def test_sanitizers_remove_planted_outliers(spec: dict) -> None:
    features, labels, poisons = planted()
    flagged = build_sanitizer(spec).flag(features, labels, seed=0)
    assert flagged[poisons].float().mean() >= 0.95
    assert flagged[~poisons].float().mean() <= 0.1


def test_activation_clustering_leaves_a_clean_single_cluster_class_alone_under_the_silhouette_rule() -> None:
    g = torch.Generator().manual_seed(1)
    features, labels = torch.randn(300, 16, generator=g), torch.zeros(300, dtype=torch.long)
    flagged = build_sanitizer({"name": "activation-clustering", "reduction": "pca", "rule": "silhouette",
                               "silhouette_threshold": 0.3}).flag(features, labels, seed=0)
    assert not flagged.any()


def test_spectral_signatures_remove_the_stated_share_of_each_class() -> None:
    features, labels, _ = planted(clean=90, poisons=10)
    flagged = build_sanitizer({"name": "spectral-signatures", "expected_poison_fraction": 0.2}).flag(features, labels, 0)
    for c in range(3):
        assert flagged[labels == c].sum().item() == pytest.approx(0.3 * 100, abs=1)


def test_spectral_scores_are_squared_projections_on_the_top_direction() -> None:
    features, _, poisons = planted(num_classes=1)
    scores = spectral_signature_scores(features.double())
    centred = features.double() - features.double().mean(0)
    top = torch.linalg.eigh(centred.T @ centred).eigenvectors[:, -1]
    assert torch.allclose(scores, (centred @ top).square(), rtol=1e-6, atol=1e-8)
    assert scores[poisons].min() > scores[~poisons].median()


def test_classes_too_small_to_analyse_are_kept() -> None:
    features, labels = torch.randn(5, 16), torch.tensor([0, 0, 0, 0, 1])
    assert not build_sanitizer({"name": "activation-clustering"}).flag(features, labels, 0).any()


def test_penultimate_features_are_the_inputs_of_the_output_layer() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8)
    features = penultimate_features(model, x, batch_size=4, device=torch.device("cpu"))
    assert output_layer(model) is model[3]
    assert torch.allclose(features, model[:3](x.float() / 255))
    assert model.training  # restored


def test_unknown_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="removal_factor"):
        build_sanitizer({"name": "spectral-signatures", "removal_factor": -1})
