"""The poisoned data supply: poisons drawn once per client from the seed, clients stay benign,
one-line errors for a malformed section, the evaluator's removal scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedsec.client import LocalTrainer, client_seed
from fedsec.data.datasets import load_dataset
from fedsec.federated_data import FederatedData
from fedsec.params import model_vector
from fedsec.poisoned_supply import SUPPLY_ROUND, removal_scores, supplied_poisons
from fedsec.scenario import Scenario, ScenarioError, parse_scenario

SUPPLY = {"ids": [1], "attack": {"name": "badnets", "target_mode": "all-to-all", "poison_fraction": 0.1}}


def scenario(**sections) -> Scenario:
    return Scenario.model_validate({
        "name": "supply", "seed": 3, "data": {"dataset": "synthetic", "num_clients": 4, "partitioner": {"name": "iid"}},
        "client": {"batch_size": 50, "lr": 0.01}, **sections})


def synthetic_split() -> FederatedData:
    dataset = load_dataset("synthetic")
    return FederatedData(dataset, tuple(np.arange(i * 400, (i + 1) * 400) for i in range(4)))


def test_only_the_chosen_clients_hold_poisons_drawn_from_the_seed() -> None:
    s, data = scenario(data_supply=SUPPLY), synthetic_split()
    held = LocalTrainer(s, data, torch.device("cpu")).holding(1)
    again = LocalTrainer(s, data, torch.device("cpu")).holding(1)
    clean_x, clean_y = data.client(1)
    assert held.mask.sum().item() == pytest.approx(40, abs=1)
    assert supplied_poisons(s, data, 1, client_seed(s.seed, SUPPLY_ROUND, 1)) == held.mask.sum().item()
    assert torch.equal(held.x, again.x) and torch.equal(held.mask, again.mask)
    assert torch.equal(held.y[held.mask], (clean_y[held.mask] + 1) % 10)
    assert torch.equal(held.x[~held.mask], clean_x[~held.mask]) and not torch.equal(held.x[held.mask], clean_x[held.mask])
    other = LocalTrainer(s, data, torch.device("cpu")).holding(2)
    assert not other.mask.any() and torch.equal(other.x, data.client(2)[0])
    assert s.attack is None and s.data_attack.name == "badnets"  # nobody is malicious; the evaluator scores the supply's attack


def test_sanitizing_client_trains_on_what_it_keeps() -> None:
    s = scenario(data_supply=SUPPLY, sanitization={"method": {"name": "spectral-signatures"}})
    trainer = LocalTrainer(s, synthetic_split(), torch.device("cpu"))
    local = trainer.train(1, 1, model_vector(trainer.model), sanitize=True)
    assert local.sanitized is not None and len(local.sanitized) == 400
    assert local.result.num_examples == 400 - int(local.sanitized.sum()) < 400


CRAFTED = {"ids": [1], "attack": {"name": "poison-frogs", "target_label": 0, "target_class": 6, "num_targets": 2,
                                   "poisons": 3, "iterations": 5}}


def test_a_crafting_supply_crafts_clean_label_poisons_once_against_the_pretrained_model(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDSEC_CACHE", str(tmp_path))  # its own pre-trained weights, apart from other tests'
    s, data = scenario(data_supply=CRAFTED, pretraining={"samples": 400, "epochs": 1, "fine_tune": "last-layer"}), \
        synthetic_split()
    held = LocalTrainer(s, data, torch.device("cpu")).holding(1)
    again = LocalTrainer(s, data, torch.device("cpu")).holding(1)
    x, y = data.client(1)
    assert held.mask.sum().item() == 6 and (y[held.mask] == 0).all()  # 3 poisons for each of 2 targets, T-shirt bases
    assert supplied_poisons(s, data, 1, client_seed(s.seed, SUPPLY_ROUND, 1)) == 6  # counted without crafting
    assert torch.equal(held.y, y)  # clean-label: every poison keeps its correct label
    assert torch.equal(held.x[~held.mask], x[~held.mask]) and not torch.equal(held.x[held.mask], x[held.mask])
    assert torch.equal(held.x, again.x) and torch.equal(held.mask, again.mask)
    assert not LocalTrainer(s, data, torch.device("cpu")).holding(2).mask.any()


def test_a_crafting_supply_needs_the_pretrained_model_it_crafts_against() -> None:
    raw = {"name": "s", "data": {"dataset": "synthetic", "num_clients": 4}, "data_supply": CRAFTED}
    with pytest.raises(ScenarioError) as error:
        parse_scenario(raw)
    assert error.value.lines == ["data_supply.attack: poison-frogs crafts its poisons against a model; a supply crafts "
                                 "them against the pre-trained model (add a pretraining section)"]


@pytest.mark.parametrize(("supply", "problem"), [
    ({"attack": {"name": "badnets"}}, "data_supply: give fraction or ids (exactly one)"),
    ({"ids": [9], "attack": {"name": "badnets"}}, "data_supply.ids: [9] are not client ids 0..3"),
    ({"ids": [0], "attack": {"name": "badnets", "poison_fraction": 2}}, "data_supply.attack.poison_fraction"),
])
def test_malformed_supply_is_one_line_naming_the_field(supply: dict, problem: str) -> None:
    raw = {"name": "s", "data": {"dataset": "synthetic", "num_clients": 4}, "data_supply": supply}
    with pytest.raises(ScenarioError) as error:
        parse_scenario(raw)
    assert len(error.value.lines) == 1 and problem in error.value.lines[0]


def test_one_data_attack_per_scenario() -> None:
    raw = {"name": "s", "data": {"dataset": "synthetic", "num_clients": 4}, "data_supply": SUPPLY,
           "attack": {"ids": [0], "data": {"name": "badnets"}}}
    with pytest.raises(ScenarioError, match="give attack.data or data_supply, not both"):
        parse_scenario(raw)


def test_removal_scores() -> None:
    scores = removal_scores(removed=50, removed_poisons=40, held=500, poisons=50)
    assert scores == {"sanitization_precision": 0.8, "sanitization_recall": 0.8, "sanitization_clean_removed": 10 / 450}
    assert removal_scores(0, 0, 100, 0)["sanitization_recall"] is None
