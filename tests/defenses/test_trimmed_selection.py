"""The selection-based trimmed mean against its definition by a sort, ties included."""

from __future__ import annotations

import pytest
import torch

from fedsec.defenses.base import coordinate_contributions
from fedsec.defenses.trimmed_mean import trimmed_mean


def by_sort(rows: torch.Tensor, cut: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The definition: sort each coordinate, keep positions cut .. n - cut - 1."""
    n = rows.shape[0]
    ordered = rows.sort(dim=0)
    kept = ordered.values[cut : n - cut]
    return kept.mean(dim=0), coordinate_contributions(n, ordered.indices[cut : n - cut], kept / kept.shape[0])


@pytest.mark.parametrize("n", [1, 2, 5, 10, 11, 40])
@pytest.mark.parametrize("beta", [0.0, 0.1, 0.3, 0.45, "median"])
def test_rows_without_ties_get_the_sorted_definition(n: int, beta: float | str) -> None:
    rows = torch.randn(n, 64, generator=torch.Generator().manual_seed(n))
    cut = (n - 1) // 2 if beta == "median" else int(beta * n)
    aggregate, contributions = trimmed_mean(rows, cut)
    expected_aggregate, expected_contributions = by_sort(rows, cut)
    assert torch.allclose(aggregate, expected_aggregate, atol=1e-6)
    assert torch.allclose(contributions, expected_contributions, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cut", [1, 2, 3, 4])
def test_identical_rows_share_what_the_sorted_definition_gives_them(cut: int) -> None:
    """Copies of a row tie at every coordinate: whichever copy supplies a value, the group of
    copies gets the mass the sort gives it."""
    distinct = torch.randn(4, 200, generator=torch.Generator().manual_seed(cut))
    copies = torch.tensor([0, 0, 0, 1, 2, 2, 3, 3, 3])
    rows = distinct[copies]
    aggregate, contributions = trimmed_mean(rows, cut)
    expected_aggregate, expected_contributions = by_sort(rows, cut)
    assert torch.allclose(aggregate, expected_aggregate, atol=1e-6)
    group = torch.zeros(4).index_add_(0, copies, contributions)
    expected_group = torch.zeros(4).index_add_(0, copies, expected_contributions)
    assert torch.allclose(group, expected_group, atol=1e-5)


def test_a_constant_coordinate_keeps_its_value_and_counts_it_once_per_kept_row() -> None:
    rows = torch.full((10, 1), 3.0)
    aggregate, contributions = trimmed_mean(rows, 2)
    assert float(aggregate) == 3.0
    assert float(contributions.sum()) == pytest.approx(3.0)
    assert int((contributions > 0).sum()) == 6
