"""Every attack validates its scenario entry: names, defaults, ranges, unknown keys."""

import pytest
from pydantic import TypeAdapter, ValidationError

from fedsec.attacks import (
    DATA_ATTACKS,
    MODEL_ATTACKS,
    build_data_attack,
    build_model_attack,
    params_union,
    parse_params,
)
from fedsec.attacks.data.badnets import BadNets
from fedsec.attacks.model.scaling import Scaling

REGISTRIES = [DATA_ATTACKS, MODEL_ATTACKS]


def test_the_registries_hold_the_scenario_names() -> None:
    assert DATA_ATTACKS.names() == [
        "badnets", "blended", "bullseye-polytope", "convex-polytope", "dba", "hidden-trigger", "label-flip",
        "poison-frogs", "sig", "wanet",
    ]  # fmt: skip
    assert MODEL_ATTACKS.names() == [
        "alie", "constrain-scale", "gaussian", "ipm", "minmax", "minsum", "neurotoxin", "scaling", "sign-flip",
    ]  # fmt: skip


@pytest.mark.parametrize("registry", REGISTRIES)
def test_params_name_matches_the_registered_name_and_fields_are_documented(registry) -> None:
    for name in registry.names():
        params = registry.get(name).Params
        assert params().name == name
        assert params.model_config["extra"] == "forbid"
        documented = [field.description for key, field in params.model_fields.items() if key != "name"]
        assert all(documented), name


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "badnets", "poison_fraction": 1.5},
        {"name": "badnets", "patch_size": 0},
        {"name": "badnets", "target_label": 10},
        {"name": "badnets", "position": "middle"},
        {"name": "badnets", "colour": "red"},
        {"name": "blended", "alpha": -0.1},
        {"name": "sig", "target_mode": "all-to-all"},
        {"name": "sig", "train_strength": 300},
        {"name": "wanet", "noise_fraction": 2},
        {"name": "dba", "num_parts": 0},
        {"name": "label-flip", "source_label": 0},
        {"name": "label-flip", "target_mode": "clean"},
        {"name": "scaling", "gamma": 0},
        {"name": "constrain-scale", "radius": -1},
        {"name": "neurotoxin", "top_fraction": 1.2},
        {"name": "gaussian", "sigma": -1},
        {"name": "gaussian", "mode": "multiply"},
        {"name": "minmax", "perturbation": "random"},
        {"name": "ipm", "epsilon": 0},
    ],
)
def test_out_of_range_values_are_rejected(spec: dict) -> None:
    registry = DATA_ATTACKS if spec["name"] in DATA_ATTACKS else MODEL_ATTACKS
    with pytest.raises(ValidationError):
        parse_params(registry, spec)


def test_unknown_or_missing_names() -> None:
    with pytest.raises(KeyError, match="unknown data attack"):
        parse_params(DATA_ATTACKS, {"name": "trojan"})
    with pytest.raises(KeyError, match="needs a 'name'"):
        parse_params(MODEL_ATTACKS, {"gamma": 2})


def test_discriminated_union_and_building_from_params() -> None:
    data = TypeAdapter(params_union(DATA_ATTACKS)).validate_python({"name": "badnets", "patch_size": 5})
    assert isinstance(data, BadNets.Params) and data.patch_size == 5
    assert isinstance(build_data_attack(data), BadNets)
    model = TypeAdapter(params_union(MODEL_ATTACKS)).validate_python({"name": "scaling", "gamma": 2})
    assert isinstance(build_model_attack(model), Scaling)
    with pytest.raises(TypeError):
        build_model_attack(Scaling.Params.model_construct(name="ipm"))
