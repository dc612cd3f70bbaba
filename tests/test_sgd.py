"""fedsec.sgd.SGD: torch.optim.SGD's update, bit for bit, without importing torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from fedsec.sgd import SGD


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    model[0].bias.requires_grad_(False)  # a frozen parameter is skipped by both
    return model


def _train(model: nn.Module, optimizer, steps: int) -> None:
    data = torch.Generator().manual_seed(7)
    for step in range(steps):
        x = torch.randn(5, 1, 8, 8, generator=data)
        y = torch.randint(0, 3, (5,), generator=data)
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        if step == 2:  # a step where only the last bias has a gradient: the others keep theirs unchanged
            loss = model[3].bias.square().sum()
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 5e-4), (0.5, 1e-2)])
def test_the_parameters_equal_torch_optims_bit_for_bit(momentum, weight_decay):
    ours, torchs = _model(0), _model(0)
    _train(ours, SGD(ours.parameters(), lr=0.05, momentum=momentum, weight_decay=weight_decay), steps=6)
    _train(torchs, torch.optim.SGD(torchs.parameters(), lr=0.05, momentum=momentum, weight_decay=weight_decay), steps=6)
    for a, b in zip(ours.parameters(), torchs.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(ours[3].weight, _model(0)[3].weight)  # it trained


@pytest.mark.parametrize("kwargs, field", [({"lr": 0}, "lr"), ({"lr": 0.1, "momentum": 1.0}, "momentum"),
                                           ({"lr": 0.1, "weight_decay": -1.0}, "weight_decay")])
def test_bad_settings_are_refused_by_name(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field} must be"):
        SGD(_model(0).parameters(), **kwargs)


def test_local_training_does_not_import_torch_dynamo():
    code = (
        "import sys, torch\n"
        "from fedsec.models import build_model\n"
        "from fedsec.training import ClientConfig, train_local\n"
        "model = build_model('cnn', (1, 28, 28), 10, 0.5, 0.25)\n"
        "x = torch.randint(0, 255, (64, 1, 28, 28), dtype=torch.uint8)\n"
        "train_local(model, x, torch.randint(0, 10, (64,)), ClientConfig(), torch.Generator().manual_seed(0), torch.device('cpu'))\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"
