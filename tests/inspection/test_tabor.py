"""TABOR: its regularisers are the reference code's terms, the planted trigger's class is named
and a clean model is not flagged, with the inspected model left untouched."""

from __future__ import annotations

import pytest
import torch

from fedsec.inspection import QueryFunction, build_inspector
from fedsec.inspection.tabor import regularisers, squared_variation
from tests.inspection.conftest import TARGET, Task

FAST = {"name": "tabor", "epochs": 20}


def test_the_regularisers_are_the_reference_terms() -> None:
    mask = torch.zeros(4, 4)
    mask[1:3, 1:3] = 0.5
    pattern = torch.full((1, 4, 4), 0.2)
    size, pattern_size, scatter, pattern_scatter = regularisers(mask, pattern)
    assert size.item() == pytest.approx(4 * 0.5 + 4 * 0.25)
    outside = 255 * 0.2 * (1 - mask)  # 12 pixels at 51, 4 at 25.5 (the reference's 0..255 scale)
    assert pattern_size.item() == pytest.approx(outside.sum().item() + outside.square().sum().item())
    assert scatter.item() == pytest.approx(8 * 0.25)  # 8 neighbour pairs cross the square's border
    assert pattern_scatter.item() == pytest.approx(8 * 25.5**2)
    assert squared_variation(torch.ones(3, 5, 5)).item() == 0


def test_the_planted_trigger_is_found_and_its_class_named(task: Task) -> None:
    report = build_inspector(FAST).inspect(task.backdoored, task.x, task.y, torch.Generator().manual_seed(0))
    assert report.backdoored and report.targets == (TARGET,) and report.score > report.threshold
    metric = torch.tensor(report.class_scores)
    assert metric.argmin() == TARGET
    assert all(p.grad is None for p in task.backdoored.parameters())


def test_a_clean_model_is_not_flagged(task: Task) -> None:
    report = build_inspector(FAST).inspect(task.clean, task.x, task.y, torch.Generator().manual_seed(0))
    assert not report.backdoored and report.targets == ()


def test_tabor_is_white_box_only(task: Task) -> None:
    with pytest.raises(ValueError, match="needs the model's weights"):
        build_inspector(FAST).inspect(QueryFunction.of_model(task.clean, 100), task.x, task.y, torch.Generator())
    with pytest.raises(ValueError, match="access"):
        build_inspector({**FAST, "access": "black-box"})
