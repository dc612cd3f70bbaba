"""Model pairing: translators on known maps, planted trigger caught, clean FRR."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsec.guards import build_guard
from fedsec.guards.model_pairing import (
    cosine_translator,
    least_squares_translator,
    penultimate,
    rotation_translator,
)
from tests.guards.conftest import World


def test_penultimate_is_the_last_linear_input() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = torch.rand(5, 1, 2, 2)
    assert torch.allclose(penultimate(model, x, 2), model[:3](x))


def test_translators_recover_known_maps() -> None:
    g = torch.Generator().manual_seed(0)
    probe = torch.randn(400, 6, generator=g)
    affine, shift = torch.randn(5, 6, generator=g), torch.randn(5, generator=g)
    target = probe @ affine.T + shift
    assert torch.allclose(least_squares_translator(probe, target)(probe), target, atol=1e-4)
    cosine = cosine_translator(probe, target, 1500, 1e-2, 128, g)
    assert nn.functional.cosine_similarity(cosine(probe), target).mean() > 0.99
    rotation = torch.linalg.qr(torch.randn(6, 6, generator=g)).Q
    rotation[:, 0] *= torch.sign(torch.linalg.det(rotation))
    unit = nn.functional.normalize(probe, dim=1)
    assert torch.allclose(rotation_translator(probe, unit @ rotation.T).weight, rotation, atol=1e-4)
    with pytest.raises(ValueError, match="one size"):
        rotation_translator(probe, target)


@pytest.mark.parametrize("translation", ["linear-cosine", "least-squares", "rotation"])
def test_trigger_caught_and_clean_pass_at_the_frr(world: World, translation: str) -> None:
    guard = build_guard({"name": "model-pairing", "frr": 0.05, "translation": translation})
    guard.fit(world.model, world.clean, torch.Generator().manual_seed(0))
    clean = guard(world.model, world.test_x).rejected.float().mean().item()
    caught = guard(world.model, world.triggered).rejected.float().mean().item()
    assert 0.01 <= clean <= 0.12
    assert caught >= 0.9


def test_reference_of_another_architecture() -> None:
    guard = build_guard({"name": "model-pairing", "reference": "mlp"})
    assert guard.params.reference == "mlp"
    with pytest.raises(ValueError, match="not same or one of"):
        build_guard({"name": "model-pairing", "reference": "vgg"})
