"""Checks of a scenario against its dataset and model, made before any process starts: the ones
the schema cannot make, since it knows neither image shapes nor parameter names."""

from __future__ import annotations

from fedsec.crypto.context import ckks_parameters
from fedsec.crypto.federation import operation_needs
from fedsec.data.datasets import load_dataset
from fedsec.scenario import Scenario
from fedsec.watermark.fedcrypt import FedCrypt
from fedsec.watermark.owner import build_scheme, template_model


def preflight_problems(scenario: Scenario) -> list[str]:
    """One line per problem, naming the scenario field; empty when the run can start."""
    if scenario.watermark is None:
        return []
    dataset = load_dataset(scenario.data.dataset, scenario.data.root)
    model = template_model(scenario, dataset)
    scheme = build_scheme(scenario.watermark, dataset.num_classes)
    try:
        scheme.check(model)
    except ValueError as exc:
        return [f"watermark.scheme.layer: {exc}"]
    if isinstance(scheme, FedCrypt) and scenario.encryption.enabled:
        size = dict(model.named_parameters())[scheme.layer_name(model)].numel()
        slots = ckks_parameters(scenario.encryption, operation_needs(scenario)).slots
        if size > slots:
            return [f"watermark.scheme.layer: {scheme.layer_name(model)} has {size} values, more than one "
                    f"ciphertext holds ({slots}); choose a smaller layer or a larger encryption.poly_modulus_degree"]
    return []
