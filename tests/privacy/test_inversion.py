"""Gradient inversion on tiny models: DLG/iDLG recovers an image and its label, Inverting
Gradients beats random images, and the attacker's replay of local training is the client's."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

from fedsec.params import model_vector
from fedsec.privacy import LocalTraining, ObservedUpdate
from fedsec.privacy.dlg import DeepLeakage
from fedsec.privacy.gradients import recover_labels, simulate_update
from fedsec.privacy.inverting_gradients import InvertingGradients
from fedsec.privacy.metrics import match_images, psnr, ssim
from fedsec.training import ClientConfig, train_local

TinyModel = Callable[..., nn.Module]



def client_update(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: ClientConfig) -> torch.Tensor:
    """The update Δ a fedsec client sends after training a copy of ``model`` on (x, y)."""
    trained = copy.deepcopy(model)
    before = model_vector(trained)
    # fedsec clients train on uint8 images
    pixels = (x * 255).round().to(torch.uint8)
    train_local(trained, pixels, y, cfg, torch.Generator().manual_seed(0), torch.device("cpu"))
    return model_vector(trained) - before


def observe(model: nn.Module, update: torch.Tensor, cfg: ClientConfig, n: int) -> ObservedUpdate:
    training = LocalTraining(cfg.lr, cfg.momentum, cfg.weight_decay, cfg.local_epochs, cfg.batch_size)
    return ObservedUpdate(model, update, training, n, (1, 8, 8), 5)


def images(n: int, seed: int) -> torch.Tensor:
    """Uniform noise images, 8 x 8, on the uint8 grid."""
    return (torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 255).round() / 255


def blobs(n: int, seed: int) -> torch.Tensor:
    """Gaussian blobs at random places, 8 x 8, on the uint8 grid: images with structure, which the
    total-variation prior favours as it favours natural images."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(8.0)
    centres = torch.rand(n, 2, generator=generator) * 6 + 1
    dy = (t.view(1, 8, 1) - centres[:, 0].view(n, 1, 1)) ** 2
    dx = (t.view(1, 1, 8) - centres[:, 1].view(n, 1, 1)) ** 2
    return (torch.exp(-(dy + dx) / 6).unsqueeze(1) * 255).round() / 255


def test_replay_is_the_clients_training(tiny_model: TinyModel) -> None:
    """Two full-batch epochs of SGD with momentum and weight decay: the attacker's replay gives
    the update fedsec's training loop gives."""
    torch.manual_seed(0)
    model = tiny_model()
    x, y = images(3, 0), torch.tensor([0, 4, 2])
    cfg = ClientConfig(local_epochs=2, batch_size=8, lr=0.1, momentum=0.9, weight_decay=1e-3)
    observed = observe(model, client_update(model, x, y, cfg), cfg, 3)
    replay = simulate_update(model, x, y, observed.training)
    for simulated, real in zip(replay, observed.parameter_updates().values(), strict=True):
        torch.testing.assert_close(simulated, real, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("label", [0, 3])
def test_dlg_with_idlg_labels_recovers_one_image_and_its_label(label: int, tiny_model: TinyModel) -> None:
    torch.manual_seed(1)
    model = tiny_model()
    x, y = images(1, label), torch.tensor([label])
    cfg = ClientConfig(local_epochs=1, batch_size=1, lr=0.1)
    observed = observe(model, client_update(model, x, y, cfg), cfg, 1)
    result = DeepLeakage(DeepLeakage.Params(iterations=30)).reconstruct(observed, torch.Generator().manual_seed(0))
    assert result.labels.tolist() == [label]
    assert psnr(result.images, x).item() > 40
    assert ssim(result.images, x).item() > 0.99


def test_dlg_recovers_the_single_input_of_a_tiny_linear_model_exactly() -> None:
    """Softmax regression on 8 x 8 images: the update of one SGD step on one image determines the
    image (row c of the weight update is that of the bias times the image), and DLG with iDLG's
    label finds it to a fraction of a uint8 grey level."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    x, y = images(1, 9), torch.tensor([2])
    cfg = ClientConfig(local_epochs=1, batch_size=1, lr=0.1, momentum=0.0)
    update = client_update(model, x, y, cfg)
    observed = observe(model, update, cfg, 1)
    weight, bias = observed.parameter_updates().values()
    torch.testing.assert_close(weight[0] / bias[0], x.flatten(), rtol=0, atol=1e-3)  # the image is in the update
    result = DeepLeakage(DeepLeakage.Params(iterations=50)).reconstruct(observed, torch.Generator().manual_seed(0))
    assert result.labels.tolist() == [2]
    assert (result.images - x).abs().max().item() < 1e-3  # a uint8 grey level is 1/255 = 0.0039
    assert psnr(result.images, x).item() > 60


def test_idlg_labels_of_a_batch_with_distinct_labels(tiny_model: TinyModel) -> None:
    torch.manual_seed(2)
    model = tiny_model(nn.ReLU)
    y = torch.tensor([4, 1, 2])
    cfg = ClientConfig(local_epochs=1, batch_size=3, lr=0.05)
    observed = observe(model, client_update(model, images(3, 7), y, cfg), cfg, 3)
    assert sorted(recover_labels(observed).tolist()) == [1, 2, 4]


def test_inverting_gradients_beats_random_images_on_a_multi_step_update(tiny_model: TinyModel) -> None:
    """Two images, one per batch, two epochs: four local SGD steps, replayed by the attacker."""
    torch.manual_seed(3)
    model = tiny_model()
    x, y = blobs(2, 11), torch.tensor([1, 3])
    cfg = ClientConfig(local_epochs=2, batch_size=1, lr=0.05, momentum=0.0)
    observed = observe(model, client_update(model, x, y, cfg), cfg, 2)
    attack = InvertingGradients(InvertingGradients.Params(iterations=300, tv_weight=1e-3))
    result = attack.reconstruct(observed, torch.Generator().manual_seed(0))
    matched = x[match_images(result.images, x)]
    random = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    chance_psnr = psnr(random, x[:1].expand(64, -1, -1, -1)).max().item()
    chance_ssim = ssim(random, x[:1].expand(64, -1, -1, -1)).max().item()
    assert sorted(result.labels.tolist()) == [1, 3]
    assert psnr(result.images, matched).min().item() > chance_psnr + 5
    assert ssim(result.images, matched).min().item() > chance_ssim + 0.3
