"""Finding the layer a white-box scheme marks, by name or by default."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def marked_weight(model: nn.Module, name: str | None) -> str:
    """Name of the parameter a weight watermark lives in: ``name`` itself, or by default the last
    convolution's weight (the first linear layer's weight when there is no convolution)."""
    parameters = dict(model.named_parameters())
    if name is not None:
        if name not in parameters or parameters[name].dim() < 2:
            raise ValueError(f"{name!r} is not a weight of the model (known: {', '.join(parameters)})")
        return name
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if convs:
        return f"{convs[-1]}.weight"
    return f"{next(n for n, m in model.named_modules() if isinstance(m, nn.Linear))}.weight"


def probed_module(model: nn.Module, name: str | None) -> nn.Module:
    """The module whose input activations a detector reads: ``name``, or by default the last linear layer."""
    modules = dict(model.named_modules())
    if name is not None:
        if name not in modules:
            raise ValueError(f"{name!r} is not a module of the model")
        return modules[name]
    return [m for m in modules.values() if isinstance(m, nn.Linear)][-1]


def layer_problems(find: Callable[[], object]) -> list[str]:
    """The ValueError ``find()`` raises for a layer the model does not have, as a problem on the
    scheme's ``layer`` parameter; empty when it finds the layer."""
    try:
        find()
    except ValueError as exc:
        return [f"layer: {exc}"]
    return []
