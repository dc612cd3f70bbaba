"""Per-client fingerprints on a tiny synthetic model: every copy traces to its client, nothing else is accused."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from fedsec.watermark.fingerprints import (
    FingerprintParams,
    Fingerprints,
    client_secrets,
    fingerprint_layer,
)
from fedsec.watermark.uchida import projected

KEY = b"owner key"
CLIENTS = 10
PARAMS = FingerprintParams(bits=64)


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(128, 16), nn.ReLU(), nn.Linear(16, 4))


@pytest.fixture(scope="module")
def fingerprints() -> Fingerprints:
    return Fingerprints(PARAMS, KEY, CLIENTS, tiny_model())


def test_each_copy_traces_to_its_client(fingerprints: Fingerprints) -> None:
    model = tiny_model()
    for client in range(CLIENTS):
        trace = fingerprints.trace(fingerprints.copy_for(model, client))
        assert trace.client == client
        assert trace.ber(client) == 0.0
        innocent = torch.cat([trace.matches[:client], trace.matches[client + 1:]])
        assert int(innocent.max()) < trace.required


def test_copy_meets_the_margin_and_leaves_the_model_unchanged(fingerprints: Fingerprints) -> None:
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy = fingerprints.copy_for(model, 3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    changed = [k for k, v in copy.state_dict().items() if not torch.equal(before[k], v)]
    assert changed == [fingerprints.layer]
    secrets = fingerprints.secrets[3]
    weight = dict(copy.named_parameters())[fingerprints.layer]
    signed = (secrets["bits"] * 2 - 1) * projected(weight.detach(), secrets["projection"])
    scale = float(model[0].weight.detach().mean(0).norm())
    assert float(signed.min()) >= PARAMS.margin * scale * (1 - 1e-4)


def test_unfingerprinted_model_accuses_nobody(fingerprints: Fingerprints) -> None:
    for seed in range(5):
        assert fingerprints.trace(tiny_model(seed)).client is None


def test_reinitialised_layer_accuses_nobody(fingerprints: Fingerprints) -> None:
    copy = fingerprints.copy_for(tiny_model(), 7)
    torch.manual_seed(123)
    copy[0].reset_parameters()
    trace = fingerprints.trace(copy)
    assert trace.client is None
    assert trace.ber(7) > 1 - trace.required / trace.bits


def test_secrets_derive_from_key_and_client_alone() -> None:
    first, again = client_secrets(KEY, 4, 64, 128), client_secrets(KEY, 4, 64, 128)
    assert all(torch.equal(first[name], again[name]) for name in first)
    other_client, other_key = client_secrets(KEY, 5, 64, 128), client_secrets(b"another key", 4, 64, 128)
    for other in (other_client, other_key):
        assert not torch.equal(first["projection"], other["projection"])
        assert not torch.equal(first["bits"], other["bits"])
    assert torch.equal(Fingerprints(PARAMS, KEY, 6, tiny_model(9)).secrets[4]["bits"], first["bits"])


def test_threshold_keeps_the_union_bound() -> None:
    from fedsec.watermark.stats import binomial_p_value

    fingerprints = Fingerprints(PARAMS, KEY, CLIENTS, tiny_model())
    m = fingerprints.required
    assert CLIENTS * binomial_p_value(m, PARAMS.bits, 0.5) <= PARAMS.false_accusation
    assert CLIENTS * binomial_p_value(m - 1, PARAMS.bits, 0.5) > PARAMS.false_accusation


def test_layer_choice_and_refusals() -> None:
    model = tiny_model()
    assert fingerprint_layer(model, None) == "0.weight"
    assert fingerprint_layer(model, "2.weight") == "2.weight"
    with pytest.raises(ValueError, match="not a weight"):
        fingerprint_layer(model, "0.bias")
    with pytest.raises(ValueError, match="more bits"):
        Fingerprints(FingerprintParams(bits=8), KEY, CLIENTS, model)
    with pytest.raises(ValueError, match="do not fit"):
        Fingerprints(FingerprintParams(bits=129), KEY, CLIENTS, model)
    with pytest.raises(ValidationError):
        FingerprintParams(bits=0)
    with pytest.raises(ValidationError):
        FingerprintParams(unknown=1)
