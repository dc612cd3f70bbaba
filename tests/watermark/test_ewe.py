"""EWE: the SNNL against Frosst et al.'s formula, embedding, clean models, parameters."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from fedsec.models import build_model
from fedsec.watermark.base import WATERMARKS, OwnerPool, key_generator
from fedsec.watermark.ewe import FINAL_AWAY_STEPS, MAX_AWAY_STEPS, Ewe, forward_with_hidden, hidden_layers, snnl, stamp
from fedsec.watermark.tensors import as_input
from fedsec.watermark.owner import WatermarkOwner


def snnl_loop(x: torch.Tensor, labels: list[int], temperature: float, metric: str, epsilon: float = 0.0) -> float:
    """Frosst et al. (2019), eq. 1, one term at a time; with ``epsilon``, the form of their code and of
    the EWE authors' (``-log(eps + sum(e_same / (eps + sum(e))))``)."""
    rows = [row.flatten().double() for row in x]

    def distance(a: torch.Tensor, b: torch.Tensor) -> float:
        if metric == "cosine":
            return 1.0 - float(a @ b) / (float(a.norm()) * float(b.norm()))
        return float(((a - b) ** 2).sum())

    total = 0.0
    for i, a in enumerate(rows):
        same = sum(math.exp(-distance(a, b) / temperature)
                   for j, b in enumerate(rows) if j != i and labels[j] == labels[i])
        every = sum(math.exp(-distance(a, b) / temperature) for j, b in enumerate(rows) if j != i)
        total += math.log(epsilon + same / (epsilon + every))
    return -total / len(rows)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("temperature", [0.5, 3.0, 40.0])
def test_snnl_agrees_with_a_loop_over_the_formula(metric: str, temperature: float) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(12, 2, 3, generator=generator)
    labels = [0, 1, 2] * 4
    value = snnl(x, torch.tensor(labels), torch.tensor(temperature), metric)
    assert value.item() == pytest.approx(snnl_loop(x, labels, temperature, metric), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("temperature", [0.05, 3.0, 40.0])
def test_stabilised_snnl_agrees_with_the_reference_codes_formula(metric: str, temperature: float) -> None:
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(12, 5, generator=generator)
    labels = [0, 1] * 6
    value = snnl(x, torch.tensor(labels), torch.tensor(temperature), metric, 1e-5)
    assert value.item() == pytest.approx(snnl_loop(x, labels, temperature, metric, 1e-5), rel=1e-5, abs=1e-6)


def test_stabilised_snnl_is_bounded_where_the_formula_grows_without_limit() -> None:
    # each point's nearest neighbours carry the other label: maximising the SNNL rewards spreading
    # the points further, without limit in the formula, not past -log(eps) in the stabilised form
    base = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [11.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 0])
    temperature = torch.tensor(1.0)
    exact = [snnl(scale * base, labels, temperature).item() for scale in (1.0, 4.0, 16.0)]
    assert exact[0] < exact[1] < exact[2] and exact[2] > 1000
    far = (16.0 * base).requires_grad_(True)
    stabilised = snnl(far, labels, temperature, epsilon=1e-5)
    (gradient,) = torch.autograd.grad(stabilised, far)
    assert stabilised.item() == pytest.approx(-math.log(1e-5), rel=1e-3)
    assert gradient.abs().max().item() < 1e-3


def test_snnl_is_small_for_separated_classes_and_large_for_mixed_ones() -> None:
    labels = torch.tensor([0] * 5 + [1] * 5)
    separated = torch.cat([torch.zeros(5, 4), torch.full((5, 4), 10.0)]) + 0.01 * torch.randn(10, 4)
    mixed = torch.randn(10, 4, generator=torch.Generator().manual_seed(1))
    assert snnl(separated, labels, torch.tensor(1.0)) < 1e-3
    uniform = math.log(9 / 4)  # −log(4 same-label neighbours of 9)
    assert snnl(mixed, labels, torch.tensor(100.0)) == pytest.approx(uniform, abs=0.01)


def test_default_layers_are_the_last_three_hidden_ones(digits) -> None:
    cnn = build_model("cnn", digits.image_shape, 10, digits.mean, digits.std)
    weighted = [m for m in cnn.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert hidden_layers(cnn, None) == weighted[:-1]
    mlp = build_model("mlp", digits.image_shape, 10, digits.mean, digits.std)
    assert len(hidden_layers(mlp, None)) == 1


def test_stamp_writes_the_patch_in_every_channel() -> None:
    images = torch.zeros(2, 3, 6, 6, dtype=torch.uint8)
    stamped = stamp(images, 1, 2, 3, 200)
    assert int(stamped.sum()) == 2 * 3 * 9 * 200 and bool((stamped[:, :, 1:4, 2:5] == 200).all())
    assert int(images.sum()) == 0


@pytest.mark.parametrize(("location", "perturbation_steps"), [("saliency", 10), ("fixed", 0)])
def test_ewe_embeds_verifies_and_clean_models_do_not(scenario_with, location: str, perturbation_steps: int, digits,
                                                     clean_models, owner_dir: Path) -> None:
    scenario = scenario_with({"name": "ewe", "triggers": 40, "location": location, "saliency_steps": 100,
                              "perturbation_steps": perturbation_steps},
                             false_alarm=1e-6, embedding={"max_steps": 150, "lr": 0.05})
    owner = WatermarkOwner(scenario.watermark, scenario, digits, torch.device("cpu"), owner_dir)
    secrets = owner.secrets
    target = int(secrets["y"][0])
    assert bool((secrets["y"] == target).all()) and len(secrets["x"]) == 40
    row, column = secrets["position"].tolist()
    if not perturbation_steps:
        assert bool((secrets["x"][:, :, row:row + 3, column:column + 3] == 255).all())
    for clean in clean_models:
        assert owner.verify(clean).p_value > 1e-3
    model = copy.deepcopy(clean_models[0])
    record = owner.after_aggregation(1, model)
    assert record["wm_steps"] == 150  # a fixed number of steps by default
    assert record["wm_verified"] == 1 and record["wm_match"] >= 0.9


def test_embedding_entangles_triggers_with_the_target_class(digits, clean_models) -> None:
    from fedsec.watermark.settings import EmbeddingConfig

    def entanglement(scheme: Ewe, model: torch.nn.Module, secrets: dict) -> float:
        model.eval()
        with torch.no_grad():
            _, values = scheme.terms(model, secrets, scheme.initial_temperature(model), torch.Generator(), 32)
        return values.sum().item()

    pool = OwnerPool(digits.train_x[300:], digits.train_y[300:])
    runs = {}
    for weight in (0.0, 2.0):  # 0: the paper's baseline, the triggers learnt without the SNNL
        scheme = Ewe(Ewe.Params(triggers=30, source=1, target=7, location="fixed", weight=weight), 10)
        pool.taken = 0
        secrets = scheme.create(b"key", pool, clean_models[0])
        model = copy.deepcopy(clean_models[0])
        scheme.embed(model, secrets, digits.train_x[:300], digits.train_y[:300],
                     EmbeddingConfig(max_steps=90, lr=0.05), torch.Generator().manual_seed(0))
        runs[weight] = entanglement(scheme, model, secrets)
        assert scheme.score(model, secrets) >= 0.9  # both learn the triggers
    assert runs[2.0] > runs[0.0] + 0.1


def test_perturbation_entangles_the_triggers_without_labelling_them_t(digits, clean_models) -> None:
    pool = OwnerPool(digits.train_x[300:], digits.train_y[300:])
    initial = build_model("cnn", digits.image_shape, 10, digits.mean, digits.std)
    made = {}
    for steps in (0, 10):
        scheme = Ewe(Ewe.Params(triggers=30, source=1, target=7, saliency_steps=100, perturbation_steps=steps), 10)
        pool.taken = 0
        made[steps] = scheme.create(b"key", pool, initial)
    pool.taken = 0
    x, y = pool.take(min(len(pool.y), 20 * 30))
    proxy = scheme.proxy(initial, x, y, key_generator(b"key", "ewe-proxy"))  # the proxy create() perturbed on

    def entanglement(secrets: dict) -> float:
        images = as_input(torch.cat([secrets["x"], secrets["target_x"]]), torch.device("cpu"))
        labels = torch.cat([torch.ones(30), torch.zeros(30)])
        with torch.no_grad():
            _, hidden = forward_with_hidden(proxy, hidden_layers(proxy, None), images)
            return sum(snnl(h, labels, torch.tensor(100.0)) for h in hidden).item()

    plain, perturbed = made[0], made[10]
    assert torch.equal(plain["position"], perturbed["position"]) and torch.equal(plain["y"], perturbed["y"])
    assert entanglement(perturbed) > entanglement(plain) + 0.05
    bound = round((10 + MAX_AWAY_STEPS + FINAL_AWAY_STEPS) * 0.01 * 255) + 1
    assert 0 < int((perturbed["x"].int() - plain["x"].int()).abs().max()) <= bound
    for clean in clean_models:  # the chance level still holds: models without the watermark rarely say t
        with torch.no_grad():
            assert (clean(as_input(perturbed["x"], torch.device("cpu"))).argmax(1) == 7).float().mean() <= 0.1


def test_parameters_are_validated(digits) -> None:
    params = WATERMARKS.get("ewe").Params
    assert params().triggers == 100 and params().location == "saliency" and not params().stop_at_target
    for bad in ({"source": 3, "target": 3}, {"weight": -1}, {"epsilon": 1}, {"triggers": 1}, {"fill": 256},
                {"ratio": 0}, {"temperature": 0}, {"metric": "manhattan"}, {"location": "random"}, {"layers": []},
                {"perturbation_steps": -1}, {"perturbation_lr": 0}, {"false_watermark_rate": 1.5}, {"extra": 1}):
        with pytest.raises(ValidationError):
            params(**bad)
    model = build_model("cnn", digits.image_shape, 10, digits.mean, digits.std)
    scheme = Ewe(params(source=10, layers=["1.0", "nope"]), 10)
    assert scheme.check(model, None) == ["source: class 10 is not below the 10 classes",
                                         "layers: 'nope' not modules of the model"]
    assert Ewe(params(), 10).check(model, None) == []


def test_classes_come_from_the_key_and_differ(digits) -> None:
    pairs = {Ewe(Ewe.Params(), 10).classes(bytes([k]) * 32) for k in range(20)}
    assert all(s != t for s, t in pairs) and len(pairs) > 5
    assert all(s != 4 for s, _ in {Ewe(Ewe.Params(target=4), 10).classes(bytes([k]) * 32) for k in range(20)})
    assert Ewe(Ewe.Params(source=2, target=5), 10).classes(b"any") == (2, 5)
