"""The clean-model ASR baseline: each test trigger of the attack on the untrained (round-0) model."""

from __future__ import annotations

import pytest
import torch

from fedsec.data.datasets import load_dataset
from fedsec.evaluation import Evaluator
from fedsec.models import build_model
from fedsec.scenario import parse_scenario
from fedsec.training import to_input


def evaluator_and_model(attack: dict | None) -> tuple[Evaluator, torch.nn.Module]:
    scenario = parse_scenario({"name": "b", "data": {"dataset": "digits", "num_clients": 4, "test_samples": 200},
                               "model": {"name": "mlp"},
                               **({"attack": {"fraction": 0.25, "data": attack}} if attack else {})})
    dataset = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("mlp", dataset.image_shape, dataset.num_classes, dataset.mean, dataset.std)
    return Evaluator(dataset, scenario, torch.device("cpu")), model


def test_the_baseline_is_the_attack_success_of_the_initial_model() -> None:
    evaluator, model = evaluator_and_model({"name": "badnets", "target_label": 3})
    baseline = evaluator.clean_baseline(model)
    assert set(baseline) == {"asr_clean_baseline"}
    assert baseline["asr_clean_baseline"] == evaluator(model)["asr"]  # round 0: nothing trained yet
    triggered = evaluator.attack.apply_test_trigger(evaluator.asr_x)
    predicted = model(to_input(triggered, torch.device("cpu"))).argmax(1)
    assert baseline["asr_clean_baseline"] == pytest.approx((predicted == 3).float().mean().item())


def test_every_success_metric_gets_a_baseline_and_no_attack_none() -> None:
    evaluator, model = evaluator_and_model({"name": "dba", "target_label": 1, "part_width": 2, "gap": 1,
                                            "offset": [0, 0]})
    assert set(evaluator.clean_baseline(model)) == {"asr_clean_baseline"} | {
        f"{metric}_clean_baseline" for metric in evaluator.attack.test_triggers() if metric != "asr"}
    clean, model = evaluator_and_model(None)
    assert clean.clean_baseline(model) == {}
