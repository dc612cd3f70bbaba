"""Pipeline composition, ordering rules, scenario specs, parameter validation, checkpoints."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from pydantic import ValidationError

from fedsec.defenses import DEFENSES, DefensePipeline, Kind, UpdateBatch, build_pipeline

EXPECTED = {
    "bulyan",
    "centered-clipping",
    "crfl",
    "dnc",
    "dp-fedavg",
    "dp-noise",
    "fedavg",
    "flame",
    "fltrust",
    "foolsgold",
    "geometric-median",
    "krum",
    "median",
    "multi-krum",
    "norm-clipping",
    "signguard",
    "trimmed-mean",
}


def test_every_method_is_registered_with_documented_params() -> None:
    assert EXPECTED.issubset(DEFENSES.names())
    for name in DEFENSES.names():
        cls = DEFENSES.get(name)
        assert cls.name == name
        assert cls.Params.model_config.get("extra") == "forbid"
        for field_name, info in cls.Params.model_fields.items():
            assert info.description, f"{name}.{field_name} has no description"
        cls()  # the defaults are valid


def test_empty_pipeline_is_the_example_weighted_mean_of_accepted_rows() -> None:
    rows = torch.tensor([[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]])
    batch = UpdateBatch.of(rows, torch.tensor([1.0, 3.0, 5.0]))
    batch = replace(batch, accepted=torch.tensor([True, True, False]))
    out = DefensePipeline([])(batch)
    assert out.aggregate is not None
    assert torch.allclose(out.aggregate, torch.tensor([2.5, 1.5]))


def test_clipping_flame_noise_compose(cohort) -> None:
    rows, mu = cohort(benign=10, spread=0.5)
    gen = torch.Generator().manual_seed(8)
    backdoor = torch.randn(rows.shape[1], generator=gen)
    bad = 30.0 * (backdoor / backdoor.norm() + 0.01 * torch.randn(3, rows.shape[1], generator=gen))
    batch = UpdateBatch.of(torch.cat([rows, bad]), generator=torch.Generator().manual_seed(0))
    pipeline = build_pipeline(
        [
            {"name": "norm-clipping"},
            {"name": "flame", "noise_lambda": 0.0, "membership": "widened"},
            {"name": "dp-noise", "sigma": 0.01},
        ]
    )
    out = pipeline(batch)
    assert out.accepted.tolist() == [True] * 10 + [False] * 3
    assert set(out.scores) == {"norm-clipping", "flame"}
    assert {"norm-clipping.bound", "flame.clip_bound", "dp-noise.std"} <= set(out.info)
    assert out.aggregate is not None
    assert (out.aggregate - mu).norm() < 0.3
    assert (out.updates.norm(dim=1) <= out.info["norm-clipping.bound"] * (1 + 1e-5)).all()


def test_stages_see_only_rows_still_accepted(cohort) -> None:
    rows, _ = cohort(benign=8)
    rows = torch.cat([rows, torch.full((2, rows.shape[1]), 1e6)])
    pipeline = build_pipeline([{"name": "dnc", "f": 2, "subsample_dim": 1000}, {"name": "krum"}])
    out = pipeline(UpdateBatch.of(rows))
    assert out.accepted[-2:].tolist() == [False, False]
    assert out.accepted.sum() == 1
    # Krum scored the 8 rows DnC kept; the two it removed have no Krum score.
    assert out.scores["krum"][-2:].isnan().all() and not out.scores["krum"][:8].isnan().any()
    assert not out.scores["dnc"].isnan().any()


def test_stages_never_turn_a_rejected_row_back_on() -> None:
    rows = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    batch = replace(UpdateBatch.of(rows), accepted=torch.tensor([True, False] * 3))
    for name in ["fltrust", "foolsgold", "multi-krum", "signguard", "norm-clipping"]:
        out = DEFENSES.get(name)()(
            replace(batch, server_update=rows.mean(0), generator=torch.Generator())
        )
        assert not out.accepted[1::2].any(), name


def test_no_accepted_row_gives_the_zero_update() -> None:
    batch = replace(UpdateBatch.of(torch.ones(3, 4)), accepted=torch.zeros(3, dtype=torch.bool))
    out = build_pipeline([{"name": "median"}])(batch)
    assert out.aggregate is not None and torch.equal(out.aggregate, torch.zeros(4))


@pytest.mark.parametrize(
    "names",
    [["krum", "norm-clipping"], ["median", "krum"], ["dp-noise", "median"], ["fedavg", "dnc"]],
)
def test_order_rules(names: list[str]) -> None:
    with pytest.raises(ValueError, match="cannot follow"):
        build_pipeline([{"name": name} for name in names])


def test_kinds() -> None:
    assert DEFENSES.get("norm-clipping").kind is Kind.PRE
    assert DEFENSES.get("dnc").kind is Kind.SCREEN
    assert DEFENSES.get("krum").kind is Kind.AGGREGATE
    assert DEFENSES.get("crfl").kind is Kind.POST


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "trimmed-mean", "beta": 0.5},
        {"name": "trimmed-mean", "beta": -0.1},
        {"name": "krum", "f": -1},
        {"name": "multi-krum", "m": 0},
        {"name": "bulyan", "f": 1.5},
        {"name": "norm-clipping", "bound": 0.0},
        {"name": "dp-noise", "sigma": -1.0},
        {"name": "centered-clipping", "tau": 0},
        {"name": "geometric-median", "iterations": 0},
        {"name": "flame", "noise_lambda": -0.001},
        {"name": "dnc", "c": 0},
        {"name": "signguard", "lower": 3.0, "upper": 1.0},
        {"name": "crfl", "rho": -1},
        {"name": "foolsgold", "kappa": 0},
        {"name": "median", "beta": 0.1},  # unknown key
    ],
)
def test_params_reject_bad_values(spec: dict) -> None:
    with pytest.raises(ValidationError):
        build_pipeline([spec])


def test_unknown_defense_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="krum"):
        build_pipeline([{"name": "no-such-defense"}])


def test_pipeline_state_round_trip() -> None:
    specs = [{"name": "foolsgold"}]
    first, second = build_pipeline(specs), build_pipeline(specs)
    gen = torch.Generator().manual_seed(0)
    batches = [UpdateBatch.of(torch.randn(5, 7, generator=gen)) for _ in range(3)]
    first(batches[0])
    second.load_state_dict(first.state_dict())
    assert list(first.state_dict()) == ["0.foolsgold"]
    for batch in batches[1:]:
        a, b = first(batch).aggregate, second(batch).aggregate
        assert a is not None and b is not None and torch.equal(a, b)


def test_stateless_stage_refuses_state() -> None:
    with pytest.raises(ValueError, match="stateless"):
        DEFENSES.get("median")().load_state_dict({"x": torch.zeros(1)})


def test_batch_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="weights"):
        UpdateBatch.of(torch.zeros(3, 4), torch.ones(2))
    with pytest.raises(ValueError, match="2-D float"):
        UpdateBatch.of(torch.zeros(3, 4, dtype=torch.int64))
