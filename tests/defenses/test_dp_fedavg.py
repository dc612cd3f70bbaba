"""DP-FedAvg: clipping, equal-weight mean and noise as Flower's central DP computes them; one
client moves the aggregate by at most its share of the clip; the client-level ε is the one
Flower's accountant (Google's dp-accounting) gives for the same rounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from flwr.serverapp import RdpAccountant
from flwr.supercore.differential_privacy import compute_clip_model_update, compute_stdv
from flwr.supercore.privacy_accounting import GaussianPrivacyEvent, NeighboringRelation, PrivacyConfig, SamplingMethod

from fedsec.defenses import UpdateBatch, build_pipeline
from fedsec.defenses.dp_fedavg import DPFedAvg


def aggregate(rows: torch.Tensor, weights: torch.Tensor | None = None, seed: int = 0, **params: float) -> UpdateBatch:
    batch = UpdateBatch.of(rows, weights, generator=torch.Generator().manual_seed(seed))
    return build_pipeline([{"name": "dp-fedavg", **params}])(batch)


def rows(n: int, d: int, seed: int) -> torch.Tensor:
    """Updates of norms spread around 1 (some above a clip of 1, some below)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return x / x.norm(dim=1, keepdim=True) * torch.linspace(0.2, 3.0, n).unsqueeze(1)


def test_clipped_mean_and_noise_std_are_flowers() -> None:
    """Flower's server-side fixed clipping clips each client's model against the global one and
    averages (equal example counts: FedAvg's mean is the plain mean), with noise of std
    compute_stdv(z, S, m)."""
    updates, global_model = rows(7, 30, 0), torch.randn(30, generator=torch.Generator().manual_seed(9))
    clipped = []
    for update in updates:
        model = [(global_model + update).numpy().copy()]
        compute_clip_model_update(model, [global_model.numpy()], 1.0)
        clipped.append(model[0] - global_model.numpy())
    ours = aggregate(updates, noise_multiplier=0.0, clip=1.0)
    assert ours.aggregate is not None
    np.testing.assert_allclose(ours.aggregate.numpy(), np.mean(clipped, axis=0), rtol=1e-5, atol=1e-7)
    noisy = aggregate(updates, noise_multiplier=1.3, clip=0.7)
    assert noisy.info["dp-fedavg.std"] == pytest.approx(compute_stdv(1.3, 0.7, 7))
    assert noisy.info["dp-fedavg.clipped"] == pytest.approx(float((updates.norm(dim=1) > 0.7).float().mean()))


def test_noise_has_the_std_and_example_counts_do_not_weigh() -> None:
    zeros = torch.zeros(5, 40_000)
    noisy = aggregate(zeros, noise_multiplier=2.0, clip=0.5)
    assert noisy.aggregate is not None
    assert noisy.aggregate.std().item() == pytest.approx(2.0 * 0.5 / 5, rel=0.02)
    updates = rows(6, 20, 1)
    equal = aggregate(updates, noise_multiplier=0.0).aggregate
    skewed = aggregate(updates, torch.tensor([1.0, 1, 1, 1, 1, 1000]), noise_multiplier=0.0).aggregate
    assert equal is not None and skewed is not None
    assert torch.allclose(equal, skewed)


def test_one_client_moves_the_aggregate_by_at_most_its_share_of_the_clip() -> None:
    honest = rows(8, 50, 2)
    replaced = honest.clone()
    replaced[0] = 1e4 * torch.randn(50, generator=torch.Generator().manual_seed(3))
    before = aggregate(honest, noise_multiplier=0.0, clip=1.0).aggregate
    after = aggregate(replaced, noise_multiplier=0.0, clip=1.0).aggregate
    assert before is not None and after is not None
    assert (after - before).norm().item() <= 2 * 1.0 / 8 + 1e-6
    assert (after - before).norm().item() > 1.0 / 8  # the update did count, clipped


@pytest.mark.parametrize(("noise", "sampled", "clients", "rounds"), [(1.0, 10, 100, 30), (0.8, 5, 1000, 200)])
def test_epsilon_is_flowers_accountant(noise: float, sampled: int, clients: int, rounds: int) -> None:
    for accounting, method in (("poisson", SamplingMethod.POISSON),
                               ("no-amplification", SamplingMethod.NO_AMPLIFICATION)):
        accountant = RdpAccountant(PrivacyConfig(1e-5, clients, NeighboringRelation.ADD_OR_REMOVE_ONE, method))
        accountant.compose(GaussianPrivacyEvent(noise, sampled, clients), rounds)
        stage = DPFedAvg(noise_multiplier=noise, delta=1e-5, accounting=accounting)
        ours = stage.client_level_epsilon(rounds, sampled / clients)
        assert ours == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-6), accounting


def test_epsilon_grows_with_rounds_and_shrinks_with_noise() -> None:
    stage = DPFedAvg(noise_multiplier=1.0)
    assert stage.client_level_epsilon(0, 0.1) == 0.0
    assert stage.client_level_epsilon(10, 0.1) < stage.client_level_epsilon(50, 0.1)
    assert DPFedAvg(noise_multiplier=2.0).client_level_epsilon(50, 0.1) < stage.client_level_epsilon(50, 0.1)
    assert DPFedAvg(noise_multiplier=0.0).client_level_epsilon(5, 0.1) == math.inf
    assert build_pipeline([{"name": "fedavg"}]).client_level_epsilon(5, 0.1) is None
    assert build_pipeline([{"name": "dp-fedavg"}]).client_level_epsilon(5, 0.1) == stage.client_level_epsilon(5, 0.1)
