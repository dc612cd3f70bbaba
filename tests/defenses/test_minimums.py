"""Every stage runs on as many accepted updates as it needs, and below that the round is skipped."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from fedsec.defenses import DEFENSES, BelowMinimum, Defense, DefensePipeline, UpdateBatch, build_pipeline
from tests.crypto.test_encrypted_simulation import run


def with_minimum(name: str, **extra: Any) -> Defense:
    """The stage ``name`` with ``f = 1`` where it takes an ``f``, so that its minimum depends on it."""
    params = {"f": 1} if "f" in DEFENSES.get(name).Params.model_fields else {}
    return DEFENSES.get(name)(**params, **extra)


def batch_of(n: int, d: int = 30) -> UpdateBatch:
    """``n`` random updates with everything any stage asks for (root update, generator)."""
    gen = torch.Generator().manual_seed(n)
    rows = torch.randn(n, d, generator=gen)
    return UpdateBatch.of(
        rows, torch.arange(1.0, n + 1), torch.randn(d, generator=gen),
        server_update=rows.mean(0), generator=torch.Generator().manual_seed(0),
    )


@pytest.mark.parametrize(
    ("name", "params", "minimum"),
    [
        ("krum", {"f": 0}, 3),
        ("krum", {"f": 1}, 5),
        ("multi-krum", {"f": 1}, 5),
        ("multi-krum", {"f": 1, "m": 7}, 7),
        ("bulyan", {"f": 0}, 3),
        ("bulyan", {"f": 1}, 7),
        ("trimmed-mean", {"beta": 0.2}, 5),
        ("trimmed-mean", {"beta": 0.45}, 3),
        ("trimmed-mean", {"beta": 0.0}, 1),
        ("dnc", {"f": 2, "c": 1.5}, 4),
        ("flame", {}, 2),
    ],
)
def test_published_minimums(name: str, params: dict, minimum: int) -> None:
    assert DEFENSES.get(name)(**params).minimum_rows() == minimum


def test_every_other_stage_needs_one_row() -> None:
    larger = {"krum", "multi-krum", "bulyan", "trimmed-mean", "dnc", "flame"}
    for name in set(DEFENSES.names()) - larger:
        assert DEFENSES.get(name)().minimum_rows() == 1, name


@pytest.mark.parametrize("name", DEFENSES.names())
def test_runs_at_its_minimum_and_skips_below(name: str) -> None:
    sized = {"weight-space": {"neurons": 2, "inputs": 5}}  # a layer that fits the 30-value test model
    stage = with_minimum(name, **sized.get(name, {}))
    m = stage.minimum_rows()
    out = DefensePipeline([stage])(batch_of(m))
    assert out.aggregate is not None and out.aggregate.isfinite().all()
    if m == 1:
        return
    with pytest.raises(BelowMinimum) as caught:
        DefensePipeline([with_minimum(name)])(batch_of(m - 1))
    assert (caught.value.needed, caught.value.got) == (m, m - 1)
    assert str(caught.value) == f"{stage.label()} needs at least {m} accepted updates, got {m - 1}"


def test_trimmed_mean_cuts_a_row_at_each_end_from_its_minimum() -> None:
    for beta in [i / 1000 for i in range(1, 500)]:
        stage = DEFENSES.get("trimmed-mean")(beta=beta)
        m = stage.minimum_rows()
        assert build_pipeline([{"name": "trimmed-mean", "beta": beta}])(batch_of(m)).info["trimmed-mean.cut"] == 1
        assert int(beta * (m - 1)) == 0, beta


def test_rows_rejected_earlier_do_not_count() -> None:
    rows = batch_of(6).updates
    rows[0] *= 100.0  # the one DnC (f = 1) removes
    specs = [{"name": "dnc", "f": 1}, {"name": "krum", "f": 1}]
    out = build_pipeline(specs)(UpdateBatch.of(rows))
    assert not out.accepted[0] and out.accepted.sum() == 1
    with pytest.raises(BelowMinimum, match=r"krum\(f=1\) needs at least 5 accepted updates, got 4"):
        build_pipeline(specs)(UpdateBatch.of(rows[:5]))


def test_no_accepted_row_is_not_a_shortfall() -> None:
    batch = replace(batch_of(4), accepted=torch.zeros(4, dtype=torch.bool))
    out = build_pipeline([{"name": "krum", "f": 1}])(batch)
    assert out.aggregate is not None and not out.aggregate.any()


@pytest.mark.parametrize("mode", ["off", "ckks"])
def test_a_round_below_the_minimum_is_skipped_and_recorded(tmp_path: Path, mode: str) -> None:
    # With seed 5 and dropout 0.3, all 5 clients reply in round 1 and one message is lost in round 2.
    run_dir, models = run(
        tmp_path, rounds=2, sampling={"clients_per_round": 5}, faults={"dropout": 0.3},
        defenses=[{"name": "krum", "f": 1}], encryption={"mode": mode},
    )
    first, second = run_dir.rounds()
    assert "skipped" not in first and first["accepted"] == 1
    assert second["dropped"] == 1 and second["replies"] == 4
    assert second["skipped"] == "defense: krum(f=1) needs at least 5 accepted updates, got 4"
    assert "accepted" not in second and "aggregate_s" not in second
    assert torch.equal(models[1], models[0])
