"""Fine-pruning (Liu, Dolan-Gavitt & Garg, RAID 2018): prune the last convolution's channels that
clean images leave dormant, then fine-tune on clean images.

Channels are pruned in increasing order of their mean activation (after ReLU) on the clean
images, one at a time, while the accuracy on a clean validation split stays within ``margin`` of
the unpruned model's; a pruned channel's weights and bias are zero and stay zero while the
model is fine-tuned (their gradients are masked), so the repaired model keeps its architecture.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from fedsec.inspection.base import REPAIRS, InspectorParams, Repair, RepairResult, register
from fedsec.training import ClientConfig, TrainingHooks, evaluate, to_input, train_local


def mean_activations(model: nn.Module, layer: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """Mean ReLU activation of each output channel of ``layer`` over uint8 images ``x``, (channels,)."""
    device = next(model.parameters()).device
    total = torch.zeros((), device=device)
    count = 0

    def record(_: nn.Module, __: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total, count
        total = total + output.relu().sum(dim=(0, 2, 3))
        count += output.shape[0] * output.shape[2] * output.shape[3]

    handle = layer.register_forward_hook(record)
    try:
        model.eval()
        with torch.no_grad():
            for batch in x.split(batch_size):
                model(to_input(batch, device))
    finally:
        handle.remove()
    return total / count


def last_convolution(model: nn.Module) -> str:
    """Name of the model's last ``nn.Conv2d``; ValueError when it has none."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if not names:
        raise ValueError("fine-pruning needs a model with a convolution layer")
    return names[-1]


@register(REPAIRS, "fine-pruning")
class FinePruning(Repair):
    """Pruning of dormant channels of one convolution, then clean fine-tuning."""

    class Params(InspectorParams):
        name: Literal["fine-pruning"] = "fine-pruning"
        margin: float = Field(
            0.04, ge=0, le=1, description="Largest drop of clean validation accuracy (0..1) pruning may cause "
            "(the paper stops at 4%).")
        layer: str | None = Field(
            None, description="Module name of the pruned convolution (e.g. '1.3'); none: the last nn.Conv2d.")
        validation: float = Field(
            0.2, gt=0, lt=1, description="Share of the clean images (0..1) held out to measure accuracy while "
            "pruning; the rest is fine-tuned on.")
        epochs: int = Field(5, ge=0, le=1_000, description="Fine-tuning passes over the clean images (0: prune only).")
        lr: float = Field(0.01, gt=0, description="Fine-tuning SGD learning rate.")
        momentum: float = Field(0.9, ge=0, lt=1, description="Fine-tuning SGD momentum (dimensionless).")
        batch_size: int = Field(32, ge=1, le=65_536, description="Images per fine-tuning step and per evaluation batch.")

    params: Params

    def repair(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> RepairResult:
        p = self.params
        model = copy.deepcopy(model)
        device = next(model.parameters()).device
        order = torch.randperm(len(y), generator=generator)
        held = max(1, round(p.validation * len(y)))
        val, train = order[:held].to(x.device), order[held:].to(x.device)
        name = p.layer if p.layer is not None else last_convolution(model)
        conv = model.get_submodule(name)
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"fine-pruning: {name!r} is not a convolution")

        def accuracy() -> float:
            return evaluate(model, x[val], y[val], p.batch_size, device).accuracy

        before = accuracy()
        keep = torch.ones(conv.out_channels, device=device)
        pruned: list[int] = []
        for channel in mean_activations(model, conv, x, p.batch_size).argsort().tolist()[:-1]:
            saved = {key: value.detach().clone() for key, value in conv.named_parameters()}
            _zero(conv, channel)
            if accuracy() < before - p.margin:
                conv.load_state_dict(saved)
                break
            keep[channel] = 0
            pruned.append(channel)
        after_pruning = accuracy()
        if p.epochs and len(train):
            masks = {key: torch.ones_like(value) for key, value in model.named_parameters()}
            masks[f"{name}.weight"] = keep.view(-1, 1, 1, 1).expand_as(conv.weight)
            if conv.bias is not None:
                masks[f"{name}.bias"] = keep
            config = ClientConfig(local_epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, momentum=p.momentum)
            train_local(model, x[train], y[train], config, generator, device, TrainingHooks(gradient_masks=masks))
        model.eval()
        return RepairResult(model, tuple(pruned), before, after_pruning, accuracy())


def _zero(conv: nn.Conv2d, channel: int) -> None:
    conv.weight.data[channel] = 0
    if conv.bias is not None:
        conv.bias.data[channel] = 0
