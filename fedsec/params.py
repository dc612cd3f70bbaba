"""Model state <-> flat float vectors, the form defenses and attacks work on."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def float_state(model: nn.Module) -> OrderedDict[str, torch.Tensor]:
    """The floating-point entries of the state dict (weights and BN statistics), in order."""
    return OrderedDict((k, v) for k, v in model.state_dict().items() if v.is_floating_point())


def flatten(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one float32 vector (d,)."""
    return torch.cat([t.detach().reshape(-1).float() for t in state.values()])


def unflatten(vector: torch.Tensor, template: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Split a vector back into tensors shaped (and typed) like ``template``."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    offset = 0
    for key, ref in template.items():
        n = ref.numel()
        out[key] = vector[offset : offset + n].view_as(ref).to(ref.dtype)
        offset += n
    if offset != vector.numel():
        raise ValueError(f"vector has {vector.numel()} values, template needs {offset}")
    return out


def model_vector(model: nn.Module) -> torch.Tensor:
    """The model's floating-point state as one vector."""
    return flatten(float_state(model))


def load_vector(model: nn.Module, vector: torch.Tensor) -> None:
    """Write a flat vector into the model's floating-point state, in place."""
    model.load_state_dict(unflatten(vector, float_state(model)), strict=False)


def vector_slice(model: nn.Module, name: str) -> slice:
    """Where state entry ``name`` sits in :func:`model_vector`'s vector."""
    start = 0
    for key, value in float_state(model).items():
        if key == name:
            return slice(start, start + value.numel())
        start += value.numel()
    raise KeyError(f"{name!r} is not a floating-point entry of the model's state")
