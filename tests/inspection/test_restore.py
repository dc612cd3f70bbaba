"""REStore: the planted trigger's class has a rare-event probability orders of magnitude above the
other classes' and is named, a clean model is not flagged, the queries stay within the budget, and
the purification repair lowers the attack's success."""

from __future__ import annotations

import pytest
import torch

from fedsec.inspection import QueryBudgetExceeded, QueryFunction, build_inspector, build_repair
from fedsec.inspection.restore import margins, stamp
from tests.inspection.conftest import PATCH, TARGET, Task, accuracy, attack_success

FAST = {"name": "restore", "query_budget": 240_000}


def test_a_latent_of_plus_infinity_stamps_a_white_square() -> None:
    z = torch.full((1, 2, 4, 4), -30.0)
    z[0, :, 2:, 2:] = 30.0  # mask 1 and pattern 1 on the square, mask 0 elsewhere
    images = torch.rand(3, 1, 4, 4)
    out = stamp(z, images, offset=-2.0)
    assert out.shape == (3, 1, 4, 4)
    assert torch.allclose(out[:, :, 2:, 2:], torch.ones(3, 1, 2, 2))
    assert torch.allclose(out[:, :, :2], images[:, :, :2])


def test_the_margin_is_the_log_ratio_to_the_best_other_class() -> None:
    probabilities = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    expected = torch.tensor([0.3 / 0.5, 0.1 / 0.8]).log()
    assert torch.allclose(margins(probabilities, 1), expected)


def test_the_planted_trigger_is_found_and_its_class_named(task: Task) -> None:
    inspector = build_inspector(FAST)
    query = QueryFunction.of_model(task.backdoored, inspector.query_budget())
    report = inspector.inspect(query, task.x, task.y, torch.Generator().manual_seed(0))
    assert report.backdoored and report.targets == (TARGET,) and report.score > report.threshold
    log10 = torch.tensor(report.class_scores)
    others = torch.cat([log10[:TARGET], log10[TARGET + 1 :]])
    assert log10[TARGET] > others.max() + 5  # at least 5 orders of magnitude above the others' estimates
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[PATCH] = True
    assert report.trigger.mask[inside].mean() > 3 * report.trigger.mask[~inside].mean()
    assert 0.9 * query.budget < report.queries == query.used <= query.budget


def test_a_clean_model_is_not_flagged(task: Task) -> None:
    report = build_inspector(FAST).inspect(task.clean, task.x, task.y, torch.Generator().manual_seed(0))
    assert not report.backdoored and report.targets == ()
    assert report.queries <= FAST["query_budget"]


def test_a_budget_too_small_for_the_particles_is_refused(task: Task) -> None:
    inspector = build_inspector({**FAST, "query_budget": 100})
    with pytest.raises((QueryBudgetExceeded, ValueError)):
        inspector.inspect(QueryFunction.of_model(task.clean, 100), task.x, task.y, torch.Generator())


def test_purification_lowers_the_attack_success(task: Task) -> None:
    repair = build_repair({**FAST, "query_budget": 120_000})
    result = repair.repair(task.backdoored, task.x, task.y, torch.Generator().manual_seed(0))
    asr_before = attack_success(task.backdoored, task.test_x, task.test_y)
    assert asr_before > 0.95 and attack_success(result.model, task.test_x, task.test_y) < 0.5 * asr_before
    assert accuracy(result.model, task.test_x, task.test_y) >= accuracy(task.backdoored, task.test_x, task.test_y) - 0.1
    assert result.pruned == () and result.accuracy_after >= result.accuracy_before - 0.1
