"""Robust aggregators stay near the honest updates when a few rows are huge outliers."""

from __future__ import annotations

import pytest
import torch

from fedsec.defenses import DEFENSES, DefensePipeline, UpdateBatch

# name -> params tolerating the 3 outliers added below to 12 honest rows (n = 15).
ROBUST = {
    "median": {},
    "trimmed-mean": {"beta": 0.25},
    "krum": {"f": 3},
    "multi-krum": {"f": 3},
    "bulyan": {"f": 3},
    "geometric-median": {"iterations": 50},
}


def with_outliers(rows: torch.Tensor, count: int = 3, scale: float = 1e4) -> torch.Tensor:
    gen = torch.Generator().manual_seed(99)
    return torch.cat([rows, scale * torch.randn(count, rows.shape[1], generator=gen)])


def aggregate(name: str, rows: torch.Tensor, **params: object) -> torch.Tensor:
    out = DefensePipeline([DEFENSES.get(name)(**params)])(UpdateBatch.of(rows))
    assert out.aggregate is not None
    return out.aggregate


def test_plain_mean_is_dragged_away(cohort) -> None:
    rows, mu = cohort()
    assert (aggregate("fedavg", with_outliers(rows)) - mu).norm() > 100


@pytest.mark.parametrize("name", sorted(ROBUST))
def test_resists_huge_outliers(name: str, cohort) -> None:
    rows, mu = cohort()
    result = aggregate(name, with_outliers(rows), **ROBUST[name])
    assert (result - mu).norm() < 0.5


@pytest.mark.parametrize("name", ["krum", "multi-krum", "bulyan"])
def test_krum_family_rejects_the_outliers(name: str, cohort) -> None:
    rows, _ = cohort()
    out = DefensePipeline([DEFENSES.get(name)(f=3)])(UpdateBatch.of(with_outliers(rows)))
    assert not out.accepted[-3:].any()
    assert out.accepted[:12].sum() >= 1
    assert out.scores[name].shape == (15,)


def test_centered_clipping_bounds_outlier_influence(cohort) -> None:
    rows, _ = cohort()
    stage = DEFENSES.get("centered-clipping")(tau=0.5, iterations=3)
    batch = UpdateBatch.of(with_outliers(rows))
    first = DefensePipeline([stage])(batch).aggregate
    assert first is not None
    # Each outlier moves the centre by at most tau / n per iteration.
    assert (first - DefensePipeline([DEFENSES.get("median")()])(batch).aggregate).norm() < 1.0
    # The next round starts from this centre and gets closer to the honest mean.
    second = DefensePipeline([stage])(batch).aggregate
    assert second is not None
    assert (second - rows.mean(0)).norm() < (first - rows.mean(0)).norm()


def test_centered_clipping_state_round_trip(cohort) -> None:
    rows, _ = cohort()
    cls = DEFENSES.get("centered-clipping")
    stage = cls(tau=0.5)
    DefensePipeline([stage])(UpdateBatch.of(rows))
    restored = cls(tau=0.5)
    restored.load_state_dict(stage.state_dict())
    a = DefensePipeline([stage])(UpdateBatch.of(rows)).aggregate
    b = DefensePipeline([restored])(UpdateBatch.of(rows)).aggregate
    assert a is not None and b is not None
    assert torch.equal(a, b)


def test_geometric_median_of_collinear_points_is_the_middle() -> None:
    rows = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [100.0, 0.0]])
    result = aggregate("geometric-median", rows, iterations=200, tolerance=0.0, eps=1e-9)
    assert torch.allclose(result, torch.tensor([2.0, 0.0]), atol=1e-3)


def test_multi_krum_weights_the_kept_rows_by_examples() -> None:
    rows = torch.tensor([[0.0], [1.0], [1.1], [50.0], [-50.0]])
    out = DefensePipeline([DEFENSES.get("multi-krum")(f=1, m=2)])(
        UpdateBatch.of(rows, torch.tensor([1.0, 3.0, 1.0, 1.0, 1.0]))
    )
    assert out.accepted.tolist() == [False, True, True, False, False]
    assert out.aggregate is not None
    assert torch.allclose(out.aggregate, torch.tensor([(3.0 + 1.1) / 4]))
