"""BDMAE: the planted trigger is restored away, clean inputs keep their labels; its pieces by hand."""

from __future__ import annotations

import pytest
import torch

from fedsec.guards import build_guard
from fedsec.guards.bdmae import local_region, neighbours, top_tokens
from tests.guards.conftest import TARGET, World

FAST = {"patch": 2, "inpainter_width": 8, "inpainter_steps": 80, "batch_size": 32,
        "initial_inner": 3, "initial_outer": 2, "refine_steps": 4}


@pytest.fixture(scope="module")
def bdmae(world: World):  # noqa: ANN201
    guard = build_guard({"name": "bdmae", "reject": True, "frr": 0.05, **FAST})
    guard.fit(world.model, world.clean, torch.Generator().manual_seed(0))
    return guard


def labels(world: World, x: torch.Tensor) -> torch.Tensor:
    return world.model(x.float() / 255).argmax(1)


def test_trigger_purified_and_clean_labels_kept(world: World, bdmae) -> None:  # noqa: ANN001
    triggered = bdmae(world.model, world.triggered[:200])
    clean = bdmae(world.model, world.test_x[:200])
    assert (labels(world, world.triggered[:200]) == TARGET).float().mean() > 0.95
    assert (labels(world, triggered.inputs) == TARGET).float().mean() < 0.1
    assert (labels(world, clean.inputs) == world.test_y[:200]).float().mean() > 0.9
    assert 0.0 <= clean.rejected.float().mean() <= 0.15
    assert triggered.rejected.float().mean() > 0.8
    assert triggered.inputs.dtype == torch.uint8


def test_purify_only_by_default(world: World) -> None:
    guard = build_guard({"name": "bdmae", **FAST, "inpainter_steps": 1})
    guard.fit(world.model, world.clean, torch.Generator().manual_seed(0))
    assert guard.threshold == float("inf") and not guard(world.model, world.triggered[:20]).rejected.any()


def test_neighbours_of_a_grid() -> None:
    adjacency = neighbours(2, 3, torch.device("cpu"))
    assert adjacency.sum(1).tolist() == [2, 3, 2, 2, 3, 2]
    assert torch.equal(adjacency, adjacency.T) and adjacency[0, 1] == 1 and adjacency[0, 4] == 0


def test_top_tokens_per_row() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.4, 0.2, 0.8, 0.6]])
    assert top_tokens(scores, torch.tensor([2, 1])).tolist() == [[0, 1, 1, 0], [0, 0, 1, 0]]


def test_local_region_grows_connected_inside_the_allowed_tokens() -> None:
    adjacency = neighbours(4, 4, torch.device("cpu"))
    scores = torch.rand(30, 16, generator=torch.Generator().manual_seed(0))
    allowed = torch.zeros(30, 16)
    allowed[:, [0, 1, 2, 4, 5, 6, 8, 9, 10]] = 1  # the top-left 3 x 3 square
    region = local_region(scores * allowed, allowed, torch.full((30,), 5), adjacency, 10.0,
                          torch.Generator().manual_seed(1))
    assert region.sum(1).eq(5).all() and (region <= allowed).all()
    for row in region:  # every token after the first touches the rest of the region
        chosen = row.nonzero().squeeze(1)
        assert all(adjacency[t, chosen].sum() >= 1 for t in chosen)


def test_batch_mask_count_uses_one_size() -> None:
    guard = build_guard({"name": "bdmae", "mask_count": "batch"})
    assert guard._counts(torch.tensor([1, 2, 6])).tolist() == [3, 3, 3]
    assert build_guard({"name": "bdmae"})._counts(torch.tensor([1, 2, 6])).tolist() == [1, 2, 6]
