"""Feature squeezing: squeezers against hand values and scipy, planted trigger caught, clean FRR."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from scipy.ndimage import median_filter

from fedsec.guards import build_guard
from fedsec.guards.feature_squeezing import median_smooth, reduce_bit_depth
from tests.guards.conftest import World


def test_bit_depth_by_hand() -> None:
    x = torch.tensor([0.0, 0.2, 0.49, 0.51, 1.0])
    assert torch.equal(reduce_bit_depth(x, 1), torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0]))
    assert torch.allclose(reduce_bit_depth(x, 2), torch.tensor([0.0, 1 / 3, 1 / 3, 2 / 3, 1.0]))


@pytest.mark.parametrize("size", [2, 3, 4, 5])
def test_median_matches_scipy(size: int) -> None:
    x = torch.rand(3, 2, 9, 7, generator=torch.Generator().manual_seed(size))
    expected = median_filter(x.numpy(), size=(1, 1, size, size), mode="reflect")
    np.testing.assert_allclose(median_smooth(x, size).numpy(), expected)


def test_trigger_caught_and_clean_pass_at_the_frr(world: World) -> None:
    guard = build_guard({"name": "feature-squeezing", "frr": 0.05})
    guard.fit(world.model, world.clean, torch.Generator())
    clean = guard(world.model, world.test_x).rejected.float().mean().item()
    caught = guard(world.model, world.triggered).rejected.float().mean().item()
    assert 0.01 <= clean <= 0.12
    assert caught >= 0.9


def test_needs_a_squeezer() -> None:
    with pytest.raises(ValidationError, match="bit_depth, median_size or both"):
        build_guard({"name": "feature-squeezing", "bit_depth": None, "median_size": None})
