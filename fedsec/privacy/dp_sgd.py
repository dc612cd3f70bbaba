"""Client-side DP-SGD (Abadi et al., CCS 2016) with Opacus: per-example gradient clipping and
Gaussian noise in every local step, Poisson-sampled batches, and the privacy accountant that
turns a client's steps into its (ε, δ)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from fedsec.accounting import Accountant, gaussian_epsilon
from fedsec.training import ClientConfig, TrainResult, make_optimizer, to_input


class DPSGDConfig(BaseModel):
    """DP-SGD in every client's local training (the scenario's ``privacy.dp_sgd``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)

    noise_multiplier: float = Field(
        ..., ge=0, le=1_000, description="σ: std of the Gaussian noise added to a batch's summed clipped "
        "gradients, in units of max_grad_norm (0: clipping only, ε is infinite).")
    max_grad_norm: float = Field(
        ..., gt=0, description="C: bound of every example's gradient norm (L2 over all parameters as one "
        "vector, gradient units).")
    delta: float = Field(
        1e-5, gt=0, lt=1, description="δ of the reported (ε, δ) guarantee (a probability; below 1 / a client's "
        "example count).")
    accountant: Accountant = Field(
        "rdp", description="rdp: Rényi DP of the subsampled Gaussian (Mironov et al. 2019; Abadi et al.'s "
        "moments accountant); prv: the tighter numerical privacy-loss accountant (Gopi et al. 2021).")


@dataclass(frozen=True)
class PoissonSchedule:
    """A client's DP-SGD steps: each step takes every example independently with probability
    ``sample_rate``; ``steps`` steps per round."""

    sample_rate: float
    steps: int

    @classmethod
    def of(cls, num_examples: int, batch_size: int, local_epochs: int) -> PoissonSchedule:
        """Expected batches of ``batch_size`` (at most all examples), ``local_epochs`` passes of
        ceil(num_examples / batch_size) steps."""
        return cls(min(1.0, batch_size / num_examples), local_epochs * math.ceil(num_examples / batch_size))


def epsilon(config: DPSGDConfig, sample_rate: float, steps: int) -> float:
    """ε after ``steps`` DP-SGD steps at ``sample_rate``, for the configuration's δ (inf without noise)."""
    return gaussian_epsilon(config.noise_multiplier, sample_rate, steps, config.delta, config.accountant)


def train_dp_sgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: ClientConfig, dp: DPSGDConfig,
    generator: torch.Generator, device: torch.device,
) -> TrainResult:
    """Train ``model`` in place as :func:`fedsec.training.train_local` does, each step with DP-SGD:
    a Poisson-sampled batch (:class:`PoissonSchedule`), every example's gradient clipped to
    ``max_grad_norm``, N(0, (σ·C)²) added to their sum, divided by the expected batch size, then
    the client's optimizer step. Batches and noise come from ``generator`` only."""
    from opacus.grad_sample import GradSampleModule  # opacus takes seconds to import: only when used
    from opacus.optimizers import DPOptimizer

    schedule = PoissonSchedule.of(len(y), cfg.batch_size, cfg.local_epochs)
    expected_batch = max(1, round(schedule.sample_rate * len(y)))
    noise = torch.Generator(device=device).manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
    per_example = GradSampleModule(model, loss_reduction="mean")
    optimizer = DPOptimizer(make_optimizer(model, cfg), noise_multiplier=dp.noise_multiplier,
                            max_grad_norm=dp.max_grad_norm, expected_batch_size=expected_batch, generator=noise)
    x, y = x.to(device), y.to(device)
    model.train()
    total, losses = torch.zeros((), device=device), 0
    with warnings.catch_warnings():
        # Opacus's hooks on a first layer whose input needs no gradient: torch warns, nothing is wrong
        warnings.filterwarnings("ignore", "Full backward hook is firing", UserWarning)
        try:
            for _ in range(schedule.steps):
                draw = torch.rand(len(y), generator=generator) < schedule.sample_rate
                batch = draw.nonzero().squeeze(1).to(device)
                optimizer.zero_grad(set_to_none=True)
                if len(batch):
                    loss = nn.functional.cross_entropy(per_example(to_input(x[batch], device)), y[batch])
                    loss.backward()
                    total += loss.detach()
                    losses += 1
                else:  # an empty draw still takes a step, the noise alone (the accountant counts it)
                    for p in model.parameters():
                        p.grad_sample = torch.zeros((0, *p.shape), device=p.device)
                optimizer.step()
        finally:
            per_example._close()  # the model is reused for the next client: no hooks left behind
    return TrainResult(loss=(total / max(losses, 1)).item(), num_examples=len(y), steps=schedule.steps)
