"""Model attacks' defaults are the published formulas, worked out by hand or by the authors' code."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from fedsec.adversary import Attacker
from fedsec.attacks.model import ModelAttackContext, build_model_attack
from fedsec.attacks.model.alie import alie_z
from fedsec.client import LocalTrainer
from fedsec.defenses import build_pipeline
from fedsec.defenses.base import UpdateBatch
from fedsec.federated_data import federated_data
from fedsec.params import model_vector
from fedsec.scenario import Scenario, parse_scenario


def context(
    d: int, updates: torch.Tensor | None = None, *, n: int = 10, m: int = 2, per_round: int | None = None,
    examples: tuple[int, int] = (100, 1000), lr: float = 1.0,
) -> ModelAttackContext:
    """A federation of n clients (m malicious), ``per_round`` of them sampled; examples = (own, round)."""
    own, total = examples
    return ModelAttackContext(
        global_vector=torch.zeros(d, dtype=torch.float64), benign_updates=updates,
        num_clients=n, num_malicious=m, num_clients_per_round=per_round or n,
        round_examples=total, own_examples=own, server_lr=lr, generator=torch.Generator().manual_seed(0),
    )


def attack(name: str, **params: object):
    return build_model_attack({"name": name, **params})


def benign(k: int = 10, d: int = 30, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, d, generator=g, dtype=torch.float64) * torch.linspace(0.1, 2.0, d) + 0.3


# ALIE (Baruch et al. 2019)


def test_alie_z_is_the_papers_for_n_100_and_m_10() -> None:
    n, m = 100, 10
    s = math.floor(n / 2 + 1) - m  # 41 benign clients needed for a majority
    assert alie_z(n, m) == pytest.approx(norm.ppf((n - s) / n), abs=1e-9)  # Φ⁻¹(0.59) ≈ 0.2275


def test_alie_takes_z_from_the_federation_not_from_the_round() -> None:
    updates = benign()
    # 100 clients, 10 malicious, 10 sampled of which one attacker: the round alone would give z = 0.
    out = attack("alie")(updates[0], context(30, updates, n=100, m=10, per_round=10))
    z = norm.ppf((100 - (51 - 10)) / 100)
    assert z > 0.2
    assert torch.allclose(out, updates.mean(0) + z * updates.std(0, correction=0))


def test_alie_default_is_the_authors_code_translated_to_updates() -> None:
    """Baruch et al.'s ``DriftAttack`` on gradients, with Δ = −η·g, gives the default update."""
    updates, lr, z = benign(), 0.1, 0.7
    grads = (-updates / lr).numpy()
    mean, stdev = np.mean(grads, axis=0), np.var(grads, axis=0) ** 0.5
    malicious_grad = mean - z * stdev  # malicious.py: grads_mean[:] -= self.num_std * grads_stdev[:]
    expected = torch.from_numpy(-lr * malicious_grad)
    assert torch.allclose(attack("alie", z=z)(updates[0], context(30, updates)), expected)
    ndss21 = attack("alie", z=z, variant="ndss21")(updates[0], context(30, updates))
    assert torch.allclose(ndss21, updates.mean(0) - z * updates.std(0))


# Min-Sum (Shejwalkar & Houmansadr 2021)

# Benign (0, 0), (2, 0), (0, 2): pairwise squared distances 4, 4, 8, per-update sums 8, 12, 12;
# mean μ = (2/3, 2/3), Σ‖μ − ∇_i‖² = 16/3; unit-vector direction p = −(1, 1)/√2 and Σ_i(μ − ∇_i) = 0,
# so Σ‖μ + γp − ∇_i‖² = 16/3 + 3γ².
TRIANGLE = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]], dtype=torch.float64)


def test_min_sum_default_bound_is_the_smallest_benign_sum() -> None:
    out = attack("minsum", perturbation="unit-vector")(TRIANGLE[0], context(2, TRIANGLE))
    # 16/3 + 3γ² = 8: γ = 2√2/3, and μ + γp lands on (0, 0).
    assert torch.allclose(out, torch.zeros(2, dtype=torch.float64), atol=1e-12)


def test_min_sum_max_bound_is_the_largest_benign_sum() -> None:
    out = attack("minsum", perturbation="unit-vector", bound="max")(TRIANGLE[0], context(2, TRIANGLE))
    # 16/3 + 3γ² = 12: γ = 2√5/3, μ + γp = (2 − √10)/3 · (1, 1).
    assert torch.allclose(out, torch.full((2,), (2 - math.sqrt(10)) / 3, dtype=torch.float64), atol=1e-12)


def authors_min_sum(all_updates: torch.Tensor, model_re: torch.Tensor, deviation: torch.Tensor) -> torch.Tensor:
    """``our_attack_score`` of the authors' NDSS21 notebooks: binary search on λ, bound the smallest sum."""
    lamda, lamda_fail, lamda_succ = 10.0, 10.0, 0.0
    scores = torch.cdist(all_updates, all_updates).square().sum(1)
    min_score = scores.min()
    while abs(lamda_succ - lamda) > 1e-5:
        score = (all_updates - (model_re - lamda * deviation)).norm(dim=1).square().sum()
        if score <= min_score:
            lamda_succ = lamda
            lamda = lamda + lamda_fail / 2
        else:
            lamda = lamda - lamda_fail / 2
        lamda_fail = lamda_fail / 2
    return model_re - lamda_succ * deviation


def test_min_sum_matches_the_authors_binary_search() -> None:
    updates = benign(k=8)
    mean = updates.mean(0)
    expected = authors_min_sum(updates, mean, updates.std(0))  # dev_type 'std'
    out = attack("minsum")(updates[0], context(30, updates))
    assert torch.allclose(out, expected, atol=1e-4)


# Model replacement (Bagdasaryan et al. 2020)


@pytest.mark.parametrize("lr", [1.0, 0.5])
def test_model_replacement_lands_the_global_model_on_the_attackers_under_example_weighted_fedavg(lr: float) -> None:
    target = benign(k=1, d=30)[0]  # the attacker's model minus the global model
    examples = torch.tensor([37.0, 120.0, 8.0, 55.0])  # the attacker holds 37 of 220
    ctx = context(30, n=100, m=1, per_round=4, examples=(37, 220), lr=lr)
    sent = attack("scaling")(target, ctx)
    rows = torch.cat([sent.unsqueeze(0), torch.zeros(3, 30, dtype=torch.float64)])
    aggregate = build_pipeline([{"name": "fedavg"}])(UpdateBatch.of(rows, examples.double())).aggregate
    assert aggregate is not None
    assert torch.allclose(lr * aggregate, target, rtol=1e-12, atol=1e-12)


def test_model_replacement_clients_weighting_is_the_papers_n_over_eta() -> None:
    u = benign(k=1)[0]
    ctx = context(30, n=100, m=1, per_round=10, examples=(37, 220), lr=0.5)
    assert torch.allclose(attack("scaling", weighting="clients")(u, ctx), 20 * u)
    assert torch.allclose(attack("scaling")(u, ctx), 220 / (37 * 0.5) * u)


# Constrain-and-scale (Bagdasaryan et al. 2020)


def test_constrain_and_scale_trains_with_the_anomaly_term_by_default() -> None:
    center, w = torch.zeros(4), torch.tensor([3.0, 4.0, 0.0, 0.0])  # ‖w − G‖ = 5
    penalty = attack("constrain-scale").training_penalty(center)
    assert penalty is not None and penalty(w).item() == pytest.approx(5.0)  # α = 0.5: (1 − α)/α = 1
    quarter = attack("constrain-scale", alpha=0.25).training_penalty(center)
    assert quarter is not None and quarter(w).item() == pytest.approx(15.0)  # (0.75/0.25)·5
    assert attack("constrain-scale", alpha=1.0).training_penalty(center) is None  # scale-only


# What the attacker is told (fedsec.adversary)


def test_attacker_scales_by_the_rounds_examples_over_its_own() -> None:
    def scenario(model: dict | None) -> Scenario:
        attack = {"ids": [2], "data": {"name": "badnets", "poison_fraction": 1.0}, **({"model": model} if model else {})}
        return parse_scenario({
            "name": "adv", "seed": 1, "rounds": 3,
            "data": {"dataset": "synthetic", "num_clients": 8, "partitioner": {"name": "dirichlet", "alpha": 0.5}},
            "model": {"name": "mlp"}, "client": {"batch_size": 50, "lr": 0.05},
            "sampling": {"clients_per_round": 4}, "resources": {"device": "cpu"}, "attack": attack,
        })

    boosted_scenario = scenario({"name": "scaling"})
    data = federated_data(boosted_scenario.data, boosted_scenario.seed)
    trainer = LocalTrainer(boosted_scenario, data, torch.device("cpu"))
    vector = torch.full_like(model_vector(trainer.model), 0.01)
    sampled = (1, 2, 5, 6)
    sizes = {p: len(data.partitions[p]) for p in sampled}
    assert len(set(sizes.values())) > 1  # unequal partitions: examples and clients weightings differ
    boosted = Attacker(boosted_scenario, 2, 1, sampled).train(trainer, vector).update
    poisoned = Attacker(scenario(None), 2, 1, sampled).train(trainer, vector).update
    assert torch.allclose(boosted, poisoned * sum(sizes.values()) / sizes[2], rtol=1e-5, atol=1e-6)
