"""Federated fine-tuning: held-out pre-training data, cached pre-trained weights, frozen layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedsec.client import LocalTrainer
from fedsec.data.datasets import load_dataset
from fedsec.federated_data import FederatedData
from fedsec.params import model_vector
from fedsec.pretraining import PretrainingConfig, held_out_indices, pretrained_state
from fedsec.scenario import Scenario

PRETRAINING = {"samples": 300, "epochs": 1, "batch_size": 50}


def scenario(fine_tune: str) -> Scenario:
    return Scenario.model_validate({
        "name": "ft", "seed": 2, "data": {"dataset": "synthetic", "num_clients": 2, "partitioner": {"name": "iid"}},
        "client": {"batch_size": 50, "lr": 0.05, "weight_decay": 0.01},
        "pretraining": {**PRETRAINING, "fine_tune": fine_tune}})


@pytest.mark.parametrize("fine_tune", ["last-layer", "whole-model"])
def test_last_layer_fine_tuning_leaves_every_other_parameter_unchanged(fine_tune: str) -> None:
    dataset = load_dataset("synthetic")
    trainer = LocalTrainer(scenario(fine_tune), FederatedData(dataset, (np.arange(200), np.arange(200, 400))),
                           torch.device("cpu"))
    update = trainer.train(0, 1, model_vector(trainer.model)).update
    head = 128 * 10 + 10  # the cnn's last Linear: the last entries of the parameter vector
    assert update[-head:].abs().sum() > 0
    assert (update[:-head].abs().sum() == 0) == (fine_tune == "last-layer")


def test_pretraining_data_is_in_no_partition_and_its_weights_are_cached(private_cache) -> None:
    s = scenario("last-layer")
    from fedsec.federated_data import federated_data

    data = federated_data(s.data, s.seed, s.held_out_examples)
    reserved = held_out_indices(len(data.dataset.train_y), 300, s.seed)
    assert len(reserved) == 300
    assert not np.intersect1d(np.concatenate(data.partitions), reserved).size
    assert sum(map(len, data.partitions)) == len(data.dataset.train_y) - 300
    config = PretrainingConfig(**PRETRAINING)
    first = pretrained_state(config, "cnn", data.dataset, s.seed, torch.device("cpu"))
    assert len(list((private_cache / "pretrained").iterdir())) == 1
    again = pretrained_state(config, "cnn", data.dataset, s.seed, torch.device("cpu"))
    assert all(torch.equal(first[k], again[k]) for k in first)
