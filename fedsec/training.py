"""Local training and evaluation loops on in-memory uint8 tensors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from fedsec.sgd import SGD

MAX_EPOCHS = 1_000
"""Most passes over the local data in one round."""
MAX_BATCH = 65_536
"""Most examples in one training or evaluation batch."""


class ClientConfig(BaseModel):
    """Local training of an honest client (the scenario's ``client`` section).

    Unknown keys are errors, values are checked on assignment and frozen, numbers are finite.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)

    local_epochs: int = Field(
        1, ge=1, le=MAX_EPOCHS, description=f"Passes over the local data per round (at most {MAX_EPOCHS:,})."
    )
    batch_size: int = Field(32, ge=1, le=MAX_BATCH, description=f"Examples per SGD step (at most {MAX_BATCH:,}).")
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="Local optimizer.")
    lr: float = Field(0.05, gt=0, description="Local learning rate.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (ignored by adam).")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty.")


def resolve_device(preference: str) -> torch.device:
    """``auto`` picks cuda when this process sees a GPU, else cpu."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def to_input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images (on any device) -> float32 in 0..1 on ``device``."""
    return x.to(device, non_blocking=True).float().div_(255.0)


def make_optimizer(model: nn.Module, cfg: ClientConfig) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer the client configuration names (DP-SGD wraps it)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


class Stepper(Protocol):
    """What :func:`train_local` needs of an optimizer."""

    def zero_grad(self, set_to_none: bool = True) -> None: ...

    def step(self) -> None: ...


def local_optimizer(model: nn.Module, cfg: ClientConfig) -> Stepper:
    """The optimizer of :func:`train_local`: for ``sgd``, :class:`fedsec.sgd.SGD` (torch.optim.SGD's
    update without torch.optim's import cost in every training process), else :func:`make_optimizer`'s."""
    if cfg.optimizer == "sgd":
        return SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return make_optimizer(model, cfg)


@dataclass(frozen=True)
class TrainResult:
    """What a local training pass reports: mean loss over its steps and examples seen."""

    loss: float
    num_examples: int
    steps: int


BatchTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class TrainingHooks:
    """What a malicious client changes in local training (all optional).

    ``transform`` rewrites each uint8 batch (data poisoning); ``penalty`` adds a term to the
    loss (e.g. anomaly evasion); ``gradient_masks`` maps parameter names to 0/1 tensors that
    multiply the gradients (e.g. Neurotoxin).
    """

    transform: BatchTransform | None = None
    penalty: Callable[[nn.Module], torch.Tensor] | None = None
    gradient_masks: dict[str, torch.Tensor] | None = None

    @property
    def empty(self) -> bool:
        """True when training is left as an honest client runs it."""
        return self.transform is None and self.penalty is None and self.gradient_masks is None


def train_local(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: ClientConfig,
    generator: torch.Generator,
    device: torch.device,
    hooks: TrainingHooks = TrainingHooks(),
) -> TrainResult:
    """Train ``model`` in place for ``cfg.local_epochs`` epochs of shuffled mini-batches.

    ``x`` are uint8 images (N, C, H, W), ``y`` int64 labels; batches are converted on
    ``device``. The batch order comes from ``generator`` only, so a run is reproducible.
    """
    model.train()
    optimizer = local_optimizer(model, cfg)
    x, y = x.to(device), y.to(device)
    masked = [(p, hooks.gradient_masks[n]) for n, p in model.named_parameters()] if hooks.gradient_masks else []
    total, steps = torch.zeros((), device=device), 0
    for _ in range(cfg.local_epochs):
        order = torch.randperm(len(y), generator=generator).to(device)
        for batch in order.split(cfg.batch_size):
            xb, yb = x[batch], y[batch]
            if hooks.transform is not None:
                xb, yb = hooks.transform(xb, yb)
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(to_input(xb, device)), yb)
            if hooks.penalty is not None:
                loss = loss + hooks.penalty(model)
            loss.backward()
            for parameter, mask in masked:
                parameter.grad.mul_(mask)
            optimizer.step()
            total += loss.detach()
            steps += 1
    return TrainResult(loss=(total / max(steps, 1)).item(), num_examples=len(y), steps=steps)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Logits of ``model`` on uint8 images ``x``, computed in batches, returned on ``device``."""
    model.eval()
    return torch.cat([model(to_input(b, device)) for b in x.split(batch_size)])


@dataclass(frozen=True)
class EvalResult:
    """Top-1 accuracy (0..1) and mean cross-entropy on a labelled set."""

    accuracy: float
    loss: float


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device
) -> EvalResult:
    """Accuracy and loss of ``model`` on (x, y)."""
    logits = predict(model, x, batch_size, device)
    y = y.to(device)
    return EvalResult(
        accuracy=(logits.argmax(1) == y).float().mean().item(),
        loss=nn.functional.cross_entropy(logits, y).item(),
    )
