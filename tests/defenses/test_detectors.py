"""Screening and weighting defenses single out the clients an attack would control."""

from __future__ import annotations

import pytest
import torch

from fedsec.defenses import DEFENSES, DefensePipeline, UpdateBatch


def run(name: str, batch: UpdateBatch, **params: object) -> UpdateBatch:
    return DefensePipeline([DEFENSES.get(name)(**params)])(batch)


def sybils_and_honest(seed: int = 0, honest: int = 8, sybils: int = 3, d: int = 50) -> torch.Tensor:
    """Honest rows in independent directions; sybils pushing one shared direction."""
    gen = torch.Generator().manual_seed(seed)
    target = torch.randn(d, generator=gen)
    bad = target + 0.01 * torch.randn(sybils, d, generator=gen)
    return torch.cat([torch.randn(honest, d, generator=gen), bad])


# FLTrust


def test_fltrust_gives_zero_trust_to_a_reversed_update(cohort) -> None:
    rows, mu = cohort(benign=6)
    reversed_row = -5.0 * mu
    batch = UpdateBatch.of(torch.cat([rows, reversed_row.unsqueeze(0)]), server_update=2.0 * mu)
    out = run("fltrust", batch)
    trust = out.scores["fltrust"]
    assert trust[-1] == 0 and (trust[:6] > 0.5).all()
    assert out.accepted.tolist() == [True] * 6 + [False]
    assert out.aggregate is not None
    # Every kept row was rescaled to |g0| = 2 before averaging.
    assert out.aggregate.norm().item() == pytest.approx(2.0, rel=0.05)


def test_fltrust_needs_the_server_update() -> None:
    with pytest.raises(ValueError, match="server_update"):
        run("fltrust", UpdateBatch.of(torch.ones(3, 4)))


# FoolsGold


def test_foolsgold_down_weights_identical_sybils() -> None:
    stage = DEFENSES.get("foolsgold")()
    for round_ in range(3):
        out = DefensePipeline([stage])(UpdateBatch.of(sybils_and_honest(seed=round_)))
    weights = out.scores["foolsgold"]
    assert (weights[-3:] == 0).all()
    assert (weights[:8] > 0.5).all()
    assert out.accepted.tolist() == [True] * 8 + [False] * 3


def test_foolsgold_follows_senders_not_rows() -> None:
    """With sender handles, history follows the sender whatever its row and round."""
    stage = DEFENSES.get("foolsgold")()
    senders = torch.arange(11) + 100
    for round_ in range(3):
        order = torch.randperm(11, generator=torch.Generator().manual_seed(round_))
        rows = sybils_and_honest(seed=round_)[order]
        out = DefensePipeline([stage])(UpdateBatch.of(rows, senders=senders[order]))
    sybil_rows = order >= 8
    assert (out.scores["foolsgold"][sybil_rows] == 0).all()
    assert (out.scores["foolsgold"][~sybil_rows] > 0.5).all()


def test_foolsgold_state_round_trip() -> None:
    cls = DEFENSES.get("foolsgold")
    stage, restored = cls(), cls()
    DefensePipeline([stage])(UpdateBatch.of(sybils_and_honest(seed=0)))
    restored.load_state_dict(stage.state_dict())
    batch = UpdateBatch.of(sybils_and_honest(seed=1))
    assert torch.equal(
        DefensePipeline([stage])(batch).scores["foolsgold"],
        DefensePipeline([restored])(batch).scores["foolsgold"],
    )


# FLAME


def test_flame_rejects_a_tight_minority_and_the_widened_cluster_keeps_the_benign(cohort, generator) -> None:
    rows, _ = cohort(benign=10, spread=0.5)
    gen = torch.Generator().manual_seed(5)
    backdoor = torch.randn(rows.shape[1], generator=gen)
    bad = backdoor + 0.01 * torch.randn(4, rows.shape[1], generator=gen)
    batch = UpdateBatch.of(torch.cat([rows, bad]), generator=generator)
    single = run("flame", batch).accepted
    assert not single[10:].any() and single.sum() >= 14 // 2 + 1  # the paper's pass: a majority, all benign
    out = run("flame", batch, membership="widened")
    assert out.accepted.tolist() == [True] * 10 + [False] * 4
    assert out.info["flame.no_cluster"] == 0


def test_flame_widened_accepts_everyone_without_attack(cohort, generator) -> None:
    for seed in range(5):
        rows, _ = cohort(benign=15, spread=0.5, seed=seed)
        assert run("flame", UpdateBatch.of(rows, generator=generator), membership="widened").accepted.all()


def test_flame_clips_to_the_median_norm(cohort, generator) -> None:
    rows, _ = cohort(benign=9)
    rows[0] *= 1000.0  # same direction, so the widened cluster keeps it, but clipped
    out = run("flame", UpdateBatch.of(rows, generator=generator), noise_lambda=0.0, membership="widened")
    assert out.accepted.all()
    assert out.aggregate is not None
    assert out.aggregate.norm() <= out.info["flame.clip_bound"] * (1 + 1e-5)


# DnC


def test_dnc_removes_rows_shifted_along_one_direction(cohort, generator) -> None:
    rows, mu = cohort(benign=12, d=400, spread=1.0)
    gen = torch.Generator().manual_seed(11)
    shift = torch.randn(400, generator=gen)
    bad = rows[:3] + 3.0 * shift / shift.norm()
    batch = UpdateBatch.of(torch.cat([rows, bad]), generator=generator)
    out = run("dnc", batch, f=3, subsample_dim=100, iterations=3)
    assert not out.accepted[-3:].any()
    assert out.accepted[:12].sum() >= 9
    assert out.aggregate is not None and (out.aggregate - mu).norm() < 0.3


# SignGuard


def skewed_signs(benign: int, d: int, seed: int) -> torch.Tensor:
    """Honest rows around a direction with 70% positive coordinates (sign statistics differ)."""
    gen = torch.Generator().manual_seed(seed)
    signs = torch.where(torch.rand(d, generator=gen) < 0.7, 1.0, -1.0)
    mu = torch.randn(d, generator=gen).abs() * signs
    mu /= mu.norm()
    return mu + 0.5 * torch.randn(benign, d, generator=gen) / d**0.5


def test_signguard_rejects_sign_flipped_and_oversized_rows(generator) -> None:
    rows = skewed_signs(12, 2000, seed=0)
    flipped = -rows[:2]
    huge = rows[2:3] * 50.0
    batch = UpdateBatch.of(torch.cat([rows, flipped, huge]), generator=generator)
    out = run("signguard", batch)
    assert out.accepted.tolist() == [True] * 12 + [False] * 3
    median_norm = out.info["signguard.median_norm"]
    assert (out.updates.norm(dim=1) <= median_norm * (1 + 1e-5)).all()


def test_signguard_keeps_most_honest_rows_without_attack(generator) -> None:
    rejected = 0
    for seed in range(5):
        out = run("signguard", UpdateBatch.of(skewed_signs(15, 2000, seed), generator=generator))
        rejected += int((~out.accepted).sum())
    assert rejected <= 0.1 * 5 * 15
