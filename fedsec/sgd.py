"""``torch.optim.SGD``'s update for local training, without ``torch.optim``'s first-use cost.

Every ``torch.optim`` optimizer imports ``torch._dynamo`` when it is built and when it first
steps: 2.4-2.9 s of CPU in each process on this repository's machines. Every Ray client actor,
ClientApp worker and sweep cell is a new process that trains, so fedsec's local SGD applies the
update itself. It is ``torch.optim.SGD``'s single-tensor update (the one torch runs on the CPU)
with dampening 0, no Nesterov and minimisation; tests/test_sgd.py checks that both leave the same
parameters, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class SGD:
    """Stochastic gradient descent with momentum and L2 weight decay.

    lr: step size. momentum: 0 <= momentum < 1, the momentum buffer's decay. weight_decay: >= 0,
    the L2 penalty's coefficient, added to each gradient as ``weight_decay * parameter``.
    Parameters without a gradient at a step are left alone, as torch.optim leaves them.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.momentum_buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) every parameter's gradient."""
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            grad = p.grad
            if self.weight_decay != 0:
                grad = grad.add(p, alpha=self.weight_decay)
            if self.momentum != 0:
                buffer = self.momentum_buffers[i]
                if buffer is None:
                    buffer = self.momentum_buffers[i] = grad.detach().clone()
                else:
                    buffer.mul_(self.momentum).add_(grad)
                grad = buffer
            p.add_(grad, alpha=-self.lr)
