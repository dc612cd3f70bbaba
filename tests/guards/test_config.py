"""The runtime_guards section: defaults, schedule, and the errors a wrong section gets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fedsec.guards import RuntimeGuardsConfig
from fedsec.scenario import ScenarioError, parse_scenario


def section(**kwargs: object) -> RuntimeGuardsConfig:
    return RuntimeGuardsConfig.model_validate({"chains": {"strip": [{"name": "strip"}]}, **kwargs})


def test_defaults_and_schedule() -> None:
    config = section()
    assert config.every is None and config.clean_samples == 2000
    assert config.chains["strip"][0].frr == 0.01
    assert [config.due(r, r == 10) for r in (5, 10)] == [False, True]
    assert [section(every=3).due(r, r == 10) for r in (3, 4, 10)] == [True, False, True]


@pytest.mark.parametrize(("raw", "message"), [
    ({"chains": {}}, "at least 1 item"),
    ({"chains": {"a": []}}, "at least 1 item"),
    ({"chains": {"a": [{"name": "neural-cleanse"}]}}, "does not match any of the expected tags"),
    ({"chains": {"a": [{"name": "strip", "frr": 1.5}]}}, "less than 1"),
    ({"chains": {"a": [{"name": "strip", "entropy": "bits"}]}}, "Extra inputs are not permitted"),
    ({"chains": {"a b": [{"name": "strip"}]}}, "should match pattern"),
    ({"chains": {"a": [{"name": "strip"}]}, "clean_samples": 5}, "greater than or equal to 10"),
    ({"chains": {"a": [{"name": "strip"}]}, "every": 0}, "greater than or equal to 1"),
    ({"chains": {"a": [{"name": "strip"}]}, "extra": 1}, "Extra inputs are not permitted"),
])
def test_schema_errors(raw: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RuntimeGuardsConfig.model_validate(raw)


def test_frozen() -> None:
    with pytest.raises(ValidationError):
        section().every = 2  # type: ignore[misc]


def test_in_a_scenario() -> None:
    base = {"name": "g", "data": {"dataset": "digits", "num_clients": 4}, "model": {"name": "mlp"}}
    assert parse_scenario(base).runtime_guards is None
    chains = {"pair": [{"name": "feature-squeezing"}, {"name": "model-pairing", "translation": "least-squares"}]}
    scenario = parse_scenario({**base, "runtime_guards": {"chains": chains}})
    assert [g.name for g in scenario.runtime_guards.chains["pair"]] == ["feature-squeezing", "model-pairing"]
    with pytest.raises(ScenarioError, match="runtime_guards.chains.pair.0"):
        parse_scenario({**base, "runtime_guards": {"chains": {"pair": [{"name": "strip", "perturbations": 1}]}}})
