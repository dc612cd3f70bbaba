"""What gradient inversion attacks share: the client's local training replayed on candidate
images, differentiably, and the labels read off the last layer's update."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.func import functional_call

from fedsec.privacy.base import LocalTraining, ObservedUpdate

LocalSteps = Literal["simulate", "single-gradient"]
LOCAL_STEPS_HELP = (
    "simulate: replay the client's SGD steps, batches in order (Geiping et al.'s 'fedavg' variant, with "
    "momentum and weight decay); single-gradient: treat the update as one gradient step of all images at the "
    "learning rate times the steps (the papers' setting). The same for a one-step client.")


def replayed_training(observed: ObservedUpdate, local_steps: LocalSteps) -> LocalTraining:
    """The local training the attacker replays on its candidate images."""
    t, n = observed.training, observed.num_images
    if local_steps == "single-gradient":
        return LocalTraining(t.lr * t.steps(n), 0.0, t.weight_decay, 1, n)
    return t


def simulate_update(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, training: LocalTraining
) -> list[torch.Tensor]:
    """Δ of each trainable parameter after ``training`` on images ``x`` (0..1) with ``target``
    (int labels (N,) or class probabilities (N, K)), differentiable in ``x`` and ``target``.

    Batches are taken in order (the client's shuffle is private); torch's SGD update rule.
    """
    names = [name for name, _ in model.named_parameters()]
    start = [p.detach().requires_grad_(True) for _, p in model.named_parameters()]
    params, velocity = list(start), [None] * len(start)
    for _ in range(training.local_epochs):
        for xb, tb in zip(x.split(training.batch_size), target.split(training.batch_size), strict=True):
            logits = functional_call(model, dict(zip(names, params, strict=True)), (xb,))
            loss = nn.functional.cross_entropy(logits, tb)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            for i, (p, g) in enumerate(zip(params, grads, strict=True)):
                g = g + training.weight_decay * p if training.weight_decay else g
                velocity[i] = g if velocity[i] is None else training.momentum * velocity[i] + g
                params[i] = p - training.lr * velocity[i]
    return [p - s for p, s in zip(params, start, strict=True)]


def last_layer_update(observed: ObservedUpdate) -> torch.Tensor:
    """Δ of the last weight matrix that outputs the classes, (K, features)."""
    weights = [u for u in observed.parameter_updates().values() if u.dim() == 2 and u.shape[0] == observed.num_classes]
    if not weights:
        raise ValueError("the model has no final linear layer with one row per class")
    return weights[-1]


def recover_labels(observed: ObservedUpdate) -> torch.Tensor:
    """Labels from the sign of the last layer's gradient (Zhao et al.'s iDLG).

    Behind a ReLU, row c of the last weight's gradient sums to (p_c − 1{y = c}) times a
    non-negative activation sum: negative only for the true label. The update is −lr times the
    gradient, so the label is the row of largest sum. For N > 1 images, the N classes of largest
    sums (Yin et al. 2021's extension), cycled when N exceeds the classes: exact when the labels
    in the batch are distinct.
    """
    order = torch.argsort(last_layer_update(observed).sum(dim=1), descending=True)
    return order[torch.arange(observed.num_images, device=order.device) % len(order)]


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels, across then down (Geiping et al.'s TV)."""
    dx = (x[:, :, :, :-1] - x[:, :, :, 1:]).abs().mean()
    dy = (x[:, :, :-1, :] - x[:, :, 1:, :]).abs().mean()
    return dx + dy
