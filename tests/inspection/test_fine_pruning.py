"""Fine-pruning lowers a planted backdoor while keeping clean accuracy, on a copy of the model."""

from __future__ import annotations

import torch

from fedsec.inspection import build_repair
from fedsec.inspection.fine_pruning import last_convolution, mean_activations
from tests.inspection.conftest import Task, accuracy, attack_success


def test_mean_activations_are_the_mean_relu_output_per_channel(task: Task) -> None:
    conv = task.clean.get_submodule(last_convolution(task.clean))
    x = task.x[:40]
    with torch.no_grad():
        expected = task.clean[:3](x.float() / 255).relu().mean(dim=(0, 2, 3))
    assert torch.allclose(mean_activations(task.clean, conv, x, batch_size=16), expected, atol=1e-6)


def test_fine_pruning_removes_the_planted_backdoor(task: Task) -> None:
    before = {k: v.clone() for k, v in task.backdoored.state_dict().items()}
    repair = build_repair({"name": "fine-pruning", "margin": 0.05, "epochs": 10, "lr": 0.05})
    result = repair.repair(task.backdoored, task.x, task.y, torch.Generator().manual_seed(0))
    assert all(torch.equal(before[k], v) for k, v in task.backdoored.state_dict().items())
    asr_before = attack_success(task.backdoored, task.test_x, task.test_y)
    asr_after = attack_success(result.model, task.test_x, task.test_y)
    assert asr_before > 0.95 and asr_after < 0.5 * asr_before
    assert accuracy(result.model, task.test_x, task.test_y) >= accuracy(task.backdoored, task.test_x, task.test_y) - 0.05
    assert result.pruned and result.accuracy_pruned >= result.accuracy_before - 0.05
    conv = result.model.get_submodule(last_convolution(result.model))
    pruned = list(result.pruned)
    assert conv.weight[pruned].abs().sum() == 0 and conv.bias[pruned].abs().sum() == 0  # stayed pruned
