"""Client-side DP-SGD: every example's gradient is clipped, ε is Opacus's own accountant's for
the same steps, a model still learns, and the audit composes a client's rounds."""

from __future__ import annotations

import copy

import pytest
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedsec.privacy.dp_sgd import DPSGDConfig, PoissonSchedule, epsilon, train_dp_sgd
from fedsec.training import ClientConfig

CPU = torch.device("cpu")


def linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def test_every_example_gradient_is_clipped_before_averaging() -> None:
    """With no noise and every example in the batch, one SGD step at lr 1 moves the weights by
    minus the mean of the per-example gradients, each scaled down to norm at most C."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (6, 1, 4, 4), generator=generator, dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    model, bound = linear(), 0.5
    start = copy.deepcopy(model)
    expected = [torch.zeros_like(p) for p in start.parameters()]
    norms = []
    for xi, yi in zip(x, y, strict=True):
        start.zero_grad()
        nn.functional.cross_entropy(start(xi[None].float() / 255), yi[None]).backward()
        grads = [p.grad.clone() for p in start.parameters()]
        norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        norms.append(norm.item())
        for e, g in zip(expected, grads, strict=True):
            e -= g * min(1.0, bound / norm.item()) / len(y)
    assert max(norms) > 2 * bound  # clipping changes the step
    cfg = ClientConfig(local_epochs=1, batch_size=6, lr=1.0, momentum=0.0)
    train_dp_sgd(model, x, y, cfg, DPSGDConfig(noise_multiplier=0.0, max_grad_norm=bound), generator, CPU)
    moved = [p.detach() - s.detach() for p, s in zip(model.parameters(), start.parameters(), strict=True)]
    for m, e in zip(moved, expected, strict=True):
        torch.testing.assert_close(m, e, rtol=1e-5, atol=1e-6)
    assert torch.sqrt(sum(m.pow(2).sum() for m in moved)) <= bound + 1e-6
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())  # Opacus's hooks are gone


@pytest.mark.filterwarnings("ignore:Full backward hook is firing", "ignore:Secure RNG turned off")  # Opacus, on purpose
@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_epsilon_is_opacus_privacy_engines_for_the_same_steps(accountant: str) -> None:
    n, batch, epochs, sigma, delta = 50, 10, 2, 1.1, 1e-4
    x, y = torch.rand(n, 16), torch.randint(0, 3, (n,))
    model = nn.Linear(16, 3)
    engine = PrivacyEngine(accountant=accountant)
    model, optimizer, loader = engine.make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=DataLoader(TensorDataset(x, y), batch_size=batch), noise_multiplier=sigma, max_grad_norm=1.0)
    steps = 0
    for _ in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
            steps += 1
    schedule = PoissonSchedule.of(n, batch, epochs)
    assert (schedule.steps, schedule.sample_rate) == (steps, 0.2)
    config = DPSGDConfig(noise_multiplier=sigma, max_grad_norm=1.0, delta=delta, accountant=accountant)
    assert epsilon(config, schedule.sample_rate, schedule.steps) == pytest.approx(engine.get_epsilon(delta), rel=1e-6)


def test_epsilon_grows_with_steps_and_falls_with_noise() -> None:
    loud, quiet = DPSGDConfig(noise_multiplier=2.0, max_grad_norm=1.0), DPSGDConfig(noise_multiplier=0.7, max_grad_norm=1.0)
    assert epsilon(loud, 0.1, 0) == 0.0
    assert epsilon(loud, 0.1, 10) < epsilon(loud, 0.1, 100) < epsilon(quiet, 0.1, 100)
    assert epsilon(DPSGDConfig(noise_multiplier=0.0, max_grad_norm=1.0), 0.1, 1) == float("inf")


def test_a_model_still_learns_under_dp_sgd() -> None:
    """Two 8 x 8 classes (bright left half, bright right half) with pixel noise."""
    generator = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (400,), generator=generator)
    left = torch.zeros(400, 1, 8, 8)
    left[:, :, :, :4] = 1.0
    images = torch.where(y.view(-1, 1, 1, 1) == 0, left, left.flip(3)) * 180 + torch.rand(400, 1, 8, 8, generator=generator) * 75
    x = images.round().to(torch.uint8)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 2))
    cfg = ClientConfig(local_epochs=3, batch_size=40, lr=0.1, momentum=0.9)
    result = train_dp_sgd(model, x[:300], y[:300], cfg, DPSGDConfig(noise_multiplier=1.0, max_grad_norm=1.0),
                          generator, CPU)
    assert result.steps == 3 * 8
    with torch.no_grad():
        accuracy = (model(x[300:].float() / 255).argmax(1) == y[300:]).float().mean().item()
    assert accuracy > 0.9
