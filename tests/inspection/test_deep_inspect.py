"""DeepInspect: the DMAD statistic on a hand-computed case, the planted trigger's class named
without any clean data, a clean model not flagged, the clean data ignored, and its scenario entry."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from fedsec.inspection import QueryFunction, build_inspector
from fedsec.inspection.deep_inspect import critical_value, dmad_deviations, small_outliers, total_variation
from fedsec.scenario import ScenarioError, parse_scenario
from tests.inspection.conftest import PATCH, TARGET, Task

FAST: dict[str, Any] = {
    "name": "deep-inspect", "inversion_images": 5, "inversion_steps": 50, "noise_dim": 8, "hidden": 32,
}


def test_the_dmad_deviations_by_hand() -> None:
    values = torch.tensor([1.0, 10.0, 11.0, 12.0, 13.0, 20.0])
    # median 11.5; below it the deviations 10.5, 1.5, 0.5 (MAD 1.5), above it 0.5, 1.5, 8.5 (MAD 1.5)
    expected = torch.tensor([10.5, 1.5, 0.5, 0.5, 1.5, 8.5]) / (1.4826 * 1.5)
    assert torch.allclose(dmad_deviations(values), expected)
    skewed = torch.tensor([1.0, 10.0, 11.0, 12.0, 40.0, 80.0])
    # median 11.5; below: MAD 1.5 as before; above: deviations 0.5, 28.5, 68.5 (MAD 28.5)
    assert dmad_deviations(skewed)[0].item() == pytest.approx(10.5 / (1.4826 * 1.5))
    assert dmad_deviations(skewed)[5].item() == pytest.approx(68.5 / (1.4826 * 28.5))
    assert small_outliers(values, 2.0) == (0,)  # 20 is far out too, but above the median
    assert small_outliers(values, 5.0) == ()
    assert small_outliers(torch.full((4,), 3.0), 2.0) == ()  # zero MAD: nothing deviates
    assert critical_value(0.05) == pytest.approx(1.959964, abs=1e-6)


def test_total_variation_by_hand() -> None:
    image = torch.zeros(1, 1, 2, 3)
    image[..., 0, 0] = 1.0  # one pixel differs from its 2 neighbours: 1 of 3 vertical, 1 of 4 horizontal pairs
    assert total_variation(image).item() == pytest.approx((1 / 3 + 1 / 4) / 2)


def test_the_planted_trigger_is_found_without_clean_data(task: Task) -> None:
    report = build_inspector(FAST).inspect(task.backdoored, task.x[:0], task.y[:0], torch.Generator().manual_seed(0))
    assert report.backdoored and report.targets == (TARGET,) and report.score > report.threshold
    norms = torch.tensor(report.class_scores)
    assert norms.argmin() == TARGET
    mask = report.trigger.mask
    assert mask[PATCH].mean() > 0.5 > mask.mean()  # the perturbation sits on the patch
    classes = len(norms)
    params = build_inspector(FAST).params
    assert report.queries == 1 + params.inversion_steps * params.inversion_images * classes + (
        params.generator_steps * params.batch_size)
    assert all(p.grad is None for p in task.backdoored.parameters())


def test_a_clean_model_is_not_flagged(task: Task) -> None:
    report = build_inspector(FAST).inspect(task.clean, task.x[:0], task.y[:0], torch.Generator().manual_seed(0))
    assert not report.backdoored and report.targets == () and report.score <= report.threshold


def test_the_clean_data_offered_is_ignored(task: Task) -> None:
    short = {**FAST, "inversion_steps": 3, "generator_steps": 3}
    given = build_inspector(short).inspect(task.backdoored, task.x, task.y, torch.Generator().manual_seed(1))
    none = build_inspector(short).inspect(task.backdoored, task.x[:0], task.y[:0], torch.Generator().manual_seed(1))
    assert given.class_scores == none.class_scores and given.queries == none.queries
    assert torch.equal(given.trigger.mask, none.trigger.mask)


def test_deep_inspect_is_white_box_only(task: Task) -> None:
    with pytest.raises(ValueError, match="needs the model's weights"):
        build_inspector(FAST).inspect(QueryFunction.of_model(task.clean, 100), task.x, task.y, torch.Generator())


def test_the_scenario_section_takes_it() -> None:
    scenario = parse_scenario({"name": "di", "inspection": {"methods": [{"name": "deep-inspect", "samples": 4}]}})
    assert scenario.inspection.methods[0].samples == 4
    with pytest.raises(ScenarioError) as error:
        parse_scenario({"name": "di", "inspection": {"methods": [{"name": "deep-inspect", "significance": 1.5}]}})
    assert any("inspection.methods.0.significance" in line for line in error.value.lines)
