"""Contributions: the share of the aggregate each row put in (docs/metrics.md#malicious-share)."""

from __future__ import annotations

import pytest
import torch

from fedsec.defenses import (
    Decision,
    Defense,
    Kind,
    TensorScalars,
    UpdateBatch,
    build_pipeline,
    run_scalar_pipeline,
)
from fedsec.fl.encrypted_aggregation import scalar_contributions


def _round(cohort) -> UpdateBatch:  # noqa: ANN001
    """Nine honest rows and three boosted attackers pulling elsewhere, with unequal example counts."""
    honest, mu = cohort(benign=9, d=30, seed=3)
    gen = torch.Generator().manual_seed(5)
    attackers = 4.0 * torch.randn(3, 30, generator=gen)
    weights = torch.arange(1.0, 13.0)
    return UpdateBatch.of(torch.cat([honest, attackers]), weights, server_update=mu,
                          generator=torch.Generator().manual_seed(0))


RULES = ["bulyan", "centered-clipping", "crfl", "dnc", "dp-noise", "fedavg", "flame", "fltrust", "foolsgold",
         "geometric-median", "krum", "median", "multi-krum", "norm-clipping", "signguard", "trimmed-mean"]
"""Every rule that runs on any update vector with its default parameters."""


@pytest.mark.parametrize("name", RULES)
def test_contributions_are_shares_of_the_accepted_rows(name: str, cohort) -> None:  # noqa: ANN001
    out = build_pipeline([{"name": name}])(_round(cohort))
    shares = out.contributions
    assert shares is not None and shares.shape == (12,)
    assert bool((shares >= 0).all()) and float(shares.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(shares[~out.accepted].abs().sum()) == 0.0


def test_fedavg_share_is_the_example_share_for_rows_of_equal_norm() -> None:
    directions = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    rows = 2.0 * directions / directions.norm(dim=1, keepdim=True)
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    shares = build_pipeline([{"name": "fedavg"}])(UpdateBatch.of(rows, weights)).contributions
    assert shares is not None
    assert float(shares[[0, 3]].sum()) == pytest.approx((1 + 4) / 15)
    assert torch.allclose(shares, weights / 15)


def test_clipping_before_the_mean_counts_the_clipped_norms() -> None:
    rows = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, -1.0], [10.0, 0.0]])
    out = build_pipeline([{"name": "norm-clipping", "bound": 2.0}, {"name": "fedavg"}])(UpdateBatch.of(rows))
    assert out.contributions is not None
    assert torch.allclose(out.contributions, torch.tensor([2.0, 1.0, 1.0, 2.0]) / 6)


def test_krum_gives_everything_to_the_row_it_selects(cohort) -> None:  # noqa: ANN001
    out = build_pipeline([{"name": "krum", "f": 3}])(_round(cohort))
    assert out.contributions is not None
    assert set(out.contributions.tolist()) == {0.0, 1.0}
    assert torch.equal(out.contributions.bool(), out.accepted)


def test_median_share_follows_the_rows_its_values_come_from() -> None:
    """Rows 0-2 (malicious) hold the middle value of coordinates 0 and 1, row 4 that of
    coordinates 2 and 3: the median is (2.0, 2.0, 1.1, 1.1), of mass 4.0 from row 0 and 2.2 from row 4."""
    rows = torch.tensor([
        [2.0, 2.0, -5.0, -5.0],
        [2.1, 2.1, 5.0, 5.0],
        [2.2, 2.2, 6.0, 6.0],
        [-1.0, -1.0, 1.0, 1.0],
        [-1.1, -1.1, 1.1, 1.1],
    ])
    out = build_pipeline([{"name": "median"}])(UpdateBatch.of(rows))
    assert out.aggregate is not None and torch.allclose(out.aggregate, torch.tensor([2.0, 2.0, 1.1, 1.1]))
    assert out.contributions is not None
    assert torch.allclose(out.contributions, torch.tensor([4.0, 0.0, 0.0, 0.0, 2.2]) / 6.2)
    assert float(out.contributions[:3].sum()) == pytest.approx(4.0 / 6.2)


def test_median_of_an_even_number_of_rows_splits_each_value_between_the_two_middle_rows() -> None:
    rows = torch.tensor([[0.0], [1.0], [3.0], [9.0]])
    out = build_pipeline([{"name": "median"}])(UpdateBatch.of(rows))
    assert out.aggregate is not None and float(out.aggregate) == 2.0
    assert out.contributions is not None
    assert torch.allclose(out.contributions, torch.tensor([0.0, 0.25, 0.75, 0.0]))


def test_centered_clipping_without_clipping_is_the_mean_of_the_rows() -> None:
    rows = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    out = build_pipeline([{"name": "centered-clipping", "tau": 100.0}])(UpdateBatch.of(rows))
    assert out.contributions is not None
    assert torch.allclose(out.contributions, torch.tensor([0.25, 0.75]))


def test_fltrust_shares_are_its_trust_scores() -> None:
    reference = torch.tensor([1.0, 0.0])
    rows = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    out = build_pipeline([{"name": "fltrust"}])(UpdateBatch.of(rows, server_update=reference))
    trust = torch.tensor([1.0, 2**-0.5, 0.0])
    assert out.contributions is not None and torch.allclose(out.contributions, trust / trust.sum())


@pytest.mark.parametrize("names", [["fedavg"], ["krum"], ["multi-krum"], ["norm-clipping", "multi-krum"],
                                   ["norm-clipping", "fedavg", "dp-noise"]])
def test_the_scalar_path_gives_the_plaintext_contributions(names: list[str], cohort) -> None:  # noqa: ANN001
    batch = _round(cohort)
    specs = [{"name": n, **({"f": 3} if "krum" in n else {})} for n in names]
    plain = build_pipeline(specs)(batch).contributions
    decided = run_scalar_pipeline(build_pipeline(specs).stages, TensorScalars(batch.updates), batch.weights,
                                  batch.d, torch.Generator().manual_seed(0))
    assert plain is not None
    assert torch.allclose(scalar_contributions(decided).float(), plain, atol=1e-6)


def test_a_stage_that_declares_it_never_rejects_cannot_reject() -> None:
    class Weighting(Defense):
        name = "weighting"
        kind = Kind.AGGREGATE
        rejects = False

        def decide(self, batch: UpdateBatch) -> Decision:
            return Decision(aggregate=batch.mean_of_accepted(), keep=torch.zeros_like(batch.accepted))

    with pytest.raises(RuntimeError, match="rejects = False"):
        Weighting()(UpdateBatch.of(torch.ones(2, 3)))
