"""Neural Cleanse: the planted trigger is found and its class named, a clean model is not
flagged, the anomaly index agrees with the authors' outlier test, and black-box use stays within
its query budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedsec.inspection import QueryBudgetExceeded, QueryFunction, build_inspector
from fedsec.inspection.neural_cleanse import anomaly_indices, flagged_classes
from tests.inspection.conftest import PATCH, TARGET, Task

FAST = {"name": "neural-cleanse", "epochs": 40}


def reference_outlier_detection(l1_norm_list: np.ndarray) -> tuple[float, list[int]]:
    """bolunwang/backdoor mad_outlier_detection.py ``outlier_detection``, restated without the
    prints: the anomaly index of the smallest norm and the flagged labels, smallest norm first."""
    consistency_constant = 1.4826
    median = np.median(l1_norm_list)
    mad = consistency_constant * np.median(np.abs(l1_norm_list - median))
    min_mad = np.abs(np.min(l1_norm_list) - median) / mad
    flag_list = []
    for y_label in range(len(l1_norm_list)):
        if l1_norm_list[y_label] > median:
            continue
        if np.abs(l1_norm_list[y_label] - median) / mad > 2:
            flag_list.append((y_label, l1_norm_list[y_label]))
    flag_list = sorted(flag_list, key=lambda x: x[1])
    return float(min_mad), [label for label, _ in flag_list]


@pytest.mark.parametrize("norms", [
    [3.5, 18.4, 11.3, 13.5, 12.6, 14.4],  # even count: numpy's median averages the middle two
    [14.8, 14.6, 18.1, 15.1, 13.0, 13.0, 16.2],
    [2.0, 2.5, 30.0, 31.0, 29.5, 30.2, 28.8, 33.0, 31.7, 30.9],  # two flagged classes
    list(np.random.default_rng(0).gamma(9.0, 2.0, size=43)),
])
def test_anomaly_index_agrees_with_the_reference_code(norms: list[float]) -> None:
    values = np.asarray(norms)
    min_mad, flagged = reference_outlier_detection(values)
    t = torch.tensor(values, dtype=torch.float64)
    assert anomaly_indices(t)[t.argmin()].item() == pytest.approx(min_mad, rel=1e-12)
    assert list(flagged_classes(t, 2.0)) == flagged


def test_the_planted_trigger_is_found_and_its_class_named(task: Task) -> None:
    report = build_inspector(FAST).inspect(task.backdoored, task.x, task.y, torch.Generator().manual_seed(0))
    assert report.backdoored and report.score > report.threshold == 2.0
    assert report.targets == (TARGET,)
    norms = torch.tensor(report.class_scores)
    assert norms.argmin() == TARGET and norms[TARGET] < 0.5 * norms.median()
    truth = torch.zeros(8, 8, dtype=torch.bool)
    truth[PATCH] = True
    found = report.trigger.mask >= 0.5
    assert (found & truth).sum() / (found | truth).sum() >= 0.75
    assert report.queries > 0 and report.seconds > 0
    # one reconstruction per class, the reported one the target's, each with the norm it was ranked by
    assert len(report.class_triggers) == len(report.class_scores)
    assert torch.equal(report.class_triggers[TARGET].mask, report.trigger.mask)
    for trigger, norm in zip(report.class_triggers, report.class_scores, strict=True):
        assert trigger.mask.sum().item() == pytest.approx(norm, rel=1e-5)


def test_a_clean_model_is_not_flagged(task: Task) -> None:
    report = build_inspector(FAST).inspect(task.clean, task.x, task.y, torch.Generator().manual_seed(0))
    assert not report.backdoored and report.targets == ()
    assert report.score <= 2.0


def test_the_inspected_model_is_left_unchanged(task: Task) -> None:
    before = {k: v.clone() for k, v in task.backdoored.state_dict().items()}
    build_inspector({**FAST, "epochs": 1}).inspect(task.backdoored, task.x, task.y, torch.Generator().manual_seed(0))
    assert all(torch.equal(before[k], v) for k, v in task.backdoored.state_dict().items())
    assert all(p.grad is None for p in task.backdoored.parameters())


def test_a_query_function_answers_within_its_budget_only(task: Task) -> None:
    query = QueryFunction.of_model(task.clean, budget=10)
    assert query(task.x[:6].float() / 255).shape == (6, 6)
    with pytest.raises(QueryBudgetExceeded, match="5 queries asked, 4 of 10 left"):
        query(task.x[:5].float() / 255)
    assert query.used == 6


def test_black_box_use_stays_within_the_budget(task: Task) -> None:
    inspector = build_inspector({**FAST, "access": "black-box", "query_budget": 30_000, "nes_samples": 4})
    budget = inspector.query_budget()
    query = QueryFunction.of_model(task.backdoored, budget)
    report = inspector.inspect(query, task.x, task.y, torch.Generator().manual_seed(0))
    assert 0.9 * budget < report.queries == query.used <= budget
    assert len(report.class_scores) == 6


def test_a_white_box_method_refuses_a_query_function(task: Task) -> None:
    inspector = build_inspector({"name": "weight-space"})
    with pytest.raises(ValueError, match="needs the model's weights"):
        inspector.inspect(QueryFunction.of_model(task.clean, 100), task.x, task.y, torch.Generator())
