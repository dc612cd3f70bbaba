"""Checks of a scenario against this machine, its dataset and its model, made before any process
starts: the ones the schema cannot make, since it knows neither the hardware, the dataset's sizes,
image shapes nor parameter names."""

from __future__ import annotations

import ipaddress
import os
import socket

import torch

from fedsec.attacks import build_data_attack
from fedsec.crypto.context import ckks_parameters
from fedsec.data.datasets import DatasetUnavailable, ImageDataset, load_dataset
from fedsec.fl.encrypted_aggregation import operation_needs
from fedsec.scenario import ResourcesConfig, Scenario
from fedsec.watermark.fingerprints import Fingerprints
from fedsec.watermark.owner import build_scheme, template_model


def preflight_problems(scenario: Scenario) -> list[str]:
    """One line per problem, naming the scenario field; empty when the run can start.

    The machine is checked first, so that no dataset is read (or downloaded) for a run that
    cannot start here.
    """
    if problems := machine_problems(scenario.resources):
        return problems
    try:
        dataset = load_dataset(scenario.data.dataset, scenario.data.root)
    except DatasetUnavailable as exc:
        return [f"data.dataset: {' '.join(str(exc).split())}"]
    if problems := data_problems(scenario, dataset):
        return problems
    return [*attack_problems(scenario, dataset), *watermark_problems(scenario, dataset)]


def machine_problems(resources: ResourcesConfig) -> list[str]:
    """Requests this machine cannot meet: Ray never places a client that asks for more than it has,
    and a cuda device fails in every process. The client resources of a cluster given by
    ``ray_address`` are not checked: its nodes are not this machine."""
    problems = [] if resources.ray_address is None else ray_address_problems(resources.ray_address)
    gpu = torch.cuda.is_available()
    if resources.device == "cuda" and not gpu:
        problems.append("resources.device: cuda, but this machine has no CUDA GPU (use auto or cpu)")
    if resources.ray_address is None:
        if resources.client_gpus > 0 and not gpu:
            problems.append(f"resources.client_gpus: {resources.client_gpus:g} GPU per client, but this machine "
                            "has no CUDA GPU (use 0)")
        cores = os.cpu_count() or 1
        if resources.client_cpus > cores:
            problems.append(f"resources.client_cpus: {resources.client_cpus:g} cores per client, but this machine "
                            f"has {cores}")
    return problems


RAY_CONNECT_TIMEOUT_S = 3.0
"""Seconds to wait for a Ray cluster's GCS port to accept a connection before refusing the run
(``ray.init`` itself retries an address nobody answers on for ever)."""


def ray_address_problems(address: str) -> list[str]:
    """A Ray cluster address must be host:port on this machine's loopback and have a GCS listening."""
    host, _, port = address.rpartition(":")
    if not port.isdigit() or not host:
        return [f"resources.ray_address: {address!r} is not host:port (e.g. 127.0.0.1:6379)"]
    try:
        loopback = ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        loopback = False
    if not loopback:
        return [f"resources.ray_address: {host} is not a loopback address; fedsec reaches Ray on 127.0.0.1 only"]
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        return [f"resources.ray_address: no Ray cluster answers at {address} ({exc.strerror or exc})"]
    return []


def data_problems(scenario: Scenario, dataset: ImageDataset) -> list[str]:
    """Counts of examples, clients and classes the dataset cannot provide."""
    data, part = scenario.data, scenario.data.partitioner
    train, test, name = len(dataset.train_y), len(dataset.test_y), dataset.name
    problems = []
    per_client = part.min_examples_per_client()
    if data.num_clients * per_client > train:
        each = f" of at least {per_client} examples each ({part.min_examples_set_by})" if per_client > 1 else ""
        problems.append(f"data.num_clients: {data.num_clients} clients{each} need {data.num_clients * per_client} "
                        f"training examples, {name} has {train}")
    problems += [f"data.partitioner.{problem}" for problem in part.check(dataset.num_classes, name)]
    if data.test_samples is not None and data.test_samples > test:
        problems.append(f"data.test_samples: {data.test_samples} is more than the {test} test examples of {name}")
    drawn_from_training = {  # samples the server or the owner draws from the training set
        "root_data.samples": scenario.root_data and scenario.root_data.samples,
        "watermark.owner_samples": scenario.watermark and scenario.watermark.owner_samples,
        "inspection.clean_samples": scenario.inspection and scenario.inspection.clean_samples,
        "runtime_guards.clean_samples": scenario.runtime_guards and scenario.runtime_guards.clean_samples,
        "pretraining.samples": scenario.pretraining and scenario.pretraining.samples,
    }
    problems += [f"{key}: {count} is more than the {train} training examples of {name}"
                 for key, count in drawn_from_training.items() if count and count > train]
    return problems


def attack_problems(scenario: Scenario, dataset: ImageDataset) -> list[str]:
    """What the data attack (malicious clients' or the poisoned supply's) cannot do on the dataset's images."""
    if scenario.data_attack is None:
        return []
    where = "data_supply.attack" if scenario.data_supply is not None else "attack.data"
    attack = build_data_attack(scenario.data_attack)
    return [f"{where}.{problem}" for problem in attack.check(dataset.image_shape, dataset.num_classes)]


def watermark_problems(scenario: Scenario, dataset: ImageDataset) -> list[str]:
    """What the watermark scheme cannot do on the scenario's model (a layer it does not have, one
    too large for a ciphertext)."""
    if scenario.watermark is None:
        return []
    scheme = build_scheme(scenario.watermark, dataset.num_classes)
    slots = None
    if scenario.encryption.enabled and scheme.embeds_on_ciphertexts:
        slots = ckks_parameters(scenario.encryption, operation_needs(scenario)).slots
    model = template_model(scenario, dataset)
    problems = [f"watermark.scheme.{problem}" for problem in scheme.check(model, slots)]
    if (fingerprints := scenario.watermark.fingerprints) is not None:
        try:
            Fingerprints(fingerprints, bytes(32), scenario.data.num_clients, model, avoid=scheme.marked_layer(model))
        except ValueError as exc:
            problems.append(f"watermark.fingerprints.{exc}")
    return problems
