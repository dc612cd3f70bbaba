"""Norm clipping bounds norms; noise (dp-noise, CRFL, FLAME) is reproducible from the generator."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from fedsec.defenses import DEFENSES, UpdateBatch, build_pipeline

RELATIVE = [
    {"name": "norm-clipping", "bound": 1.0},
    {"name": "dp-noise", "sigma": 0.5, "relative": True},
]


def rows_with_norms(norms: list[float], d: int = 30) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    rows = torch.randn(len(norms), d, generator=gen)
    return rows / rows.norm(dim=1, keepdim=True) * torch.tensor(norms).unsqueeze(1)


def test_fixed_bound_clips_every_row() -> None:
    rows = rows_with_norms([0.5, 1.0, 2.0, 40.0, 1e5])
    out = DEFENSES.get("norm-clipping")(bound=1.5)(UpdateBatch.of(rows))
    assert (out.updates.norm(dim=1) <= 1.5 * (1 + 1e-6)).all()
    # Rows under the bound are untouched, the others keep their direction.
    assert torch.equal(out.updates[:2], rows[:2])
    cos = torch.nn.functional.cosine_similarity(out.updates, rows)
    assert torch.allclose(cos, torch.ones(5))
    assert out.info["norm-clipping.bound"] == 1.5
    assert torch.allclose(out.scores["norm-clipping"], torch.tensor([0.5, 1.0, 2.0, 40.0, 1e5]))


def test_default_bound_is_the_median_norm() -> None:
    rows = rows_with_norms([1.0, 2.0, 3.0, 50.0, 60.0])
    out = DEFENSES.get("norm-clipping")()(UpdateBatch.of(rows))
    assert out.info["norm-clipping.bound"] == pytest.approx(3.0)
    assert out.updates.norm(dim=1).max() <= 3.0 * (1 + 1e-6)


def test_clipping_ignores_rejected_rows_for_the_median() -> None:
    rows = rows_with_norms([1.0, 2.0, 3.0, 50.0, 60.0])
    batch = UpdateBatch.of(rows)
    batch = replace(batch, accepted=torch.tensor([True, True, True, False, False]))
    out = DEFENSES.get("norm-clipping")()(batch)
    assert out.info["norm-clipping.bound"] == pytest.approx(2.0)
    assert torch.equal(out.updates[3:], rows[3:])  # rejected rows are left alone
    assert out.scores["norm-clipping"][3:].isnan().all()


def noised(spec: list[dict], seed: int, rows: torch.Tensor) -> torch.Tensor:
    batch = UpdateBatch.of(rows, generator=torch.Generator().manual_seed(seed))
    aggregate = build_pipeline(spec)(batch).aggregate
    assert aggregate is not None
    return aggregate


@pytest.mark.parametrize(
    "spec",
    [
        [{"name": "dp-noise", "sigma": 0.1}],
        RELATIVE,
        [{"name": "crfl", "rho": 1.0, "sigma": 0.1}],
        [{"name": "flame", "noise_lambda": 0.01}],
    ],
    ids=["dp-noise", "dp-noise-relative", "crfl", "flame"],
)
def test_noise_is_reproducible_with_the_same_generator(spec: list[dict]) -> None:
    rows = rows_with_norms([1.0] * 6)
    assert torch.equal(noised(spec, 7, rows), noised(spec, 7, rows))
    assert not torch.equal(noised(spec, 7, rows), noised(spec, 8, rows))


def test_dp_noise_has_the_requested_std() -> None:
    rows = torch.zeros(4, 20_000)
    # bound 1.0 x sigma 0.5
    assert noised(RELATIVE, 0, rows).std().item() == pytest.approx(0.5, rel=0.03)


def test_noise_needs_a_generator() -> None:
    with pytest.raises(ValueError, match="generator"):
        build_pipeline([{"name": "dp-noise", "sigma": 0.1}])(UpdateBatch.of(torch.ones(3, 4)))


def test_relative_noise_needs_a_clipping_stage() -> None:
    with pytest.raises(ValueError, match="norm-clipping"):
        noised([{"name": "dp-noise", "sigma": 0.1, "relative": True}], 0, torch.ones(3, 4))


def test_crfl_bounds_the_new_global_model() -> None:
    global_vector = torch.full((10,), 1.0)  # norm ~3.16
    rows = torch.ones(5, 10)  # new model = 2 * ones, norm ~6.3
    out = build_pipeline([{"name": "crfl", "rho": 4.0, "sigma": 0.0}])(
        UpdateBatch.of(rows, global_vector=global_vector)
    )
    assert out.aggregate is not None
    assert (global_vector + out.aggregate).norm().item() == pytest.approx(4.0)
    assert out.info["crfl.model_norm"] == pytest.approx(40**0.5)


def test_crfl_leaves_a_small_model_alone() -> None:
    rows = torch.full((3, 10), 0.01)
    out = build_pipeline([{"name": "crfl", "rho": 4.0, "sigma": 0.0}])(UpdateBatch.of(rows))
    assert out.aggregate is not None
    assert torch.allclose(out.aggregate, rows[0])
