"""Neural Cleanse (Wang et al., IEEE S&P 2019): reverse-engineer the smallest trigger that sends
clean images to each class, and flag a class whose trigger is abnormally small (MAD outlier test).

The optimisation and the outlier test follow the authors' code (bolunwang/backdoor:
``visualizer.py`` and ``mad_outlier_detection.py``): Adam (betas 0.5, 0.9) on tanh-parametrised
mask and pattern, the L1 cost schedule (start at ``init_cost``, raised by ``cost_multiplier`` and
lowered by ``cost_multiplier ** 1.5`` after ``patience`` epochs above or below the success
threshold), the best mask kept among those that reach it, early stopping, and the anomaly index
with the consistency constant 1.4826.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from fedsec.inspection.base import (
    INSPECTORS,
    Finding,
    Inspector,
    InspectorParams,
    QueryFunction,
    Subject,
    Trigger,
    register,
)

CONSISTENCY = 1.4826
"""MAD consistency constant for normally distributed norms."""
EPSILON = 1e-7
"""Keeps tanh(.) / (2 - EPSILON) + 0.5 strictly inside (0, 1), as the reference code."""

Objective = Callable[[Tensor, Tensor, Tensor, int], float]
"""(mask_tanh, pattern_tanh, images, target) -> attack success on the batch (0..1); sets the
variables' ``.grad`` to the gradient of the batch's mean cross-entropy towards ``target``."""
Penalty = Callable[[Tensor, Tensor, Tensor, Tensor, int], Tensor]
"""(mask (H, W), pattern (C, H, W), images, labels, target) -> a scalar added to the loss, beside
the L1 cost (a variant's extra regularisers, differentiable in mask and pattern)."""


def anomaly_indices(norms: Tensor) -> Tensor:
    """Anomaly index of each class, (K,): ``|norm - median| / (1.4826 * MAD)``.

    The median interpolates between the two middle values of an even count (numpy's median,
    as the reference code). A zero MAD gives 0 for norms at the median and inf for the others.
    """
    median = norms.quantile(0.5)
    deviation = (norms - median).abs()
    mad = CONSISTENCY * deviation.quantile(0.5)
    return torch.where(deviation == 0, torch.zeros_like(deviation), deviation / mad)


def flagged_classes(norms: Tensor, threshold: float) -> tuple[int, ...]:
    """Classes whose norm is at most the median and whose anomaly index exceeds ``threshold``,
    smallest norm first (the reference code's ``flag_list``)."""
    index = anomaly_indices(norms)
    below = (norms <= norms.quantile(0.5)) & (index > threshold)
    return tuple(int(k) for k in below.nonzero().squeeze(1)[norms[below].argsort()])


def to_unit(raw: Tensor) -> Tensor:
    """tanh-space variable -> values in (0, 1)."""
    return torch.tanh(raw) / (2 - EPSILON) + 0.5


def from_unit(value: Tensor) -> Tensor:
    """Inverse of :func:`to_unit`."""
    return torch.atanh((value - 0.5) * (2 - EPSILON))


@dataclass(frozen=True)
class Reconstruction:
    """One class's reverse-engineered trigger, its L1 norm and whether it reached the success
    threshold (when it never did, the last mask stands in)."""

    trigger: Trigger
    norm: float
    success: bool


@register(INSPECTORS, "neural-cleanse")
class NeuralCleanse(Inspector):
    """Per-class trigger reverse-engineering and the MAD outlier test.

    Score: the anomaly index of the smallest mask's L1 norm; the model is flagged when a class
    with a norm at most the median has an index above ``anomaly_threshold`` (2 in the paper).
    Targets: those classes, smallest norm first. White-box by default (gradients by autograd);
    ``access: black-box`` estimates the cross-entropy gradient from queries instead.
    """

    needs_weights = False

    class Params(InspectorParams):
        name: Literal["neural-cleanse"] = "neural-cleanse"
        access: Literal["white-box", "black-box"] = Field(
            "white-box", description="white-box: gradients by autograd (the paper); black-box: only class "
            "probabilities are queried and the cross-entropy gradient is estimated by antithetic NES "
            "(as B3D, Dong et al. ICCV 2021), within query_budget.")
        query_budget: int = Field(
            1_000_000, ge=1, description="Black-box only: most images queried in all (count), shared equally "
            "by the classes not yet optimised.")
        epochs: int = Field(
            30, ge=1, le=10_000, description="Most passes over the clean images per class (the reference "
            "code runs up to 1000 with early stopping).")
        batch_size: int = Field(32, ge=1, le=65_536, description="Clean images per Adam step.")
        lr: float = Field(0.1, gt=0, description="Adam learning rate on the tanh variables.")
        init_cost: float = Field(
            1e-3, ge=0, description="Initial weight of the mask's L1 norm in the loss (dimensionless).")
        cost_multiplier: float = Field(
            1.5, gt=1, description="Factor raising the cost after patience successful epochs; its 1.5th "
            "power lowers it after patience failing ones.")
        patience: int = Field(5, ge=1, description="Epochs above (or below) the success threshold before the "
                              "cost changes.")
        early_stop_patience: int = Field(
            25, ge=1, description="Epochs without a smaller successful mask before stopping (once the cost "
            "has gone both up and down).")
        attack_success: float = Field(
            0.99, gt=0, le=1, description="Share of triggered images sent to the class (0..1) for a mask "
            "to count as a trigger.")
        anomaly_threshold: float = Field(2.0, gt=0, description="Anomaly index above which a class is flagged.")
        nes_samples: int = Field(
            20, ge=1, le=10_000, description="Black-box only: antithetic perturbation pairs per gradient "
            "estimate (each costs 2 x batch_size queries).")
        nes_sigma: float = Field(
            0.1, gt=0, description="Black-box only: standard deviation of the perturbations of the tanh variables.")

    params: Params

    def query_budget(self) -> int | None:
        return self.params.query_budget if self.params.access == "black-box" else None

    def _inspect(self, subject: Subject, x: Tensor, y: Tensor, generator: torch.Generator) -> Finding:
        images = x.float() / 255
        if isinstance(subject, QueryFunction):
            objective = self._estimated(subject, generator)
            classes = subject(images[:1]).shape[1]
        else:
            objective = _autograd(subject)
            with torch.no_grad():
                classes = subject.eval()(images[:1]).shape[1]
        penalty = self._penalty(subject)
        found = []
        for target in range(classes):
            budget = subject.remaining // (classes - target) if isinstance(subject, QueryFunction) else None
            found.append(self.reverse_engineer(objective, images, y, target, generator, budget, penalty))
        statistics = self._statistics(subject, found, images)
        targets = flagged_classes(statistics, self.params.anomaly_threshold)
        suspect = targets[0] if targets else int(statistics.argmin())
        return Finding(
            backdoored=bool(targets), score=float(anomaly_indices(statistics)[statistics.argmin()]),
            threshold=self.params.anomaly_threshold, targets=targets, trigger=found[suspect].trigger,
            class_scores=tuple(statistics.tolist()), class_triggers=tuple(r.trigger for r in found),
        )

    def _penalty(self, subject: Subject) -> Penalty | None:
        """Extra regularisers of a variant (hook); Neural Cleanse has none."""
        return None

    def _statistics(self, subject: Subject, found: list[Reconstruction], images: Tensor) -> Tensor:
        """Per-class statistic of the outlier test, small for a backdoor's target (hook); Neural
        Cleanse: the masks' L1 norms."""
        return torch.tensor([r.norm for r in found], dtype=torch.float64)

    def reverse_engineer(
        self, objective: Objective, images: Tensor, labels: Tensor, target: int, generator: torch.Generator,
        budget: int | None, penalty: Penalty | None = None,
    ) -> Reconstruction:
        """The smallest trigger found for ``target`` on ``images`` (N, C, H, W) in 0..1 with their
        ``labels``, ``penalty`` added to the loss; in black-box use, epochs stop before ``budget``
        queries would be exceeded."""
        p = self.params
        _, c, h, w = images.shape
        device = images.device
        mask_raw = from_unit(torch.rand(h, w, generator=generator).to(device)).requires_grad_()
        pattern_raw = from_unit(torch.rand(c, h, w, generator=generator).to(device)).requires_grad_()
        variables = [mask_raw, pattern_raw]
        optimizer = torch.optim.Adam(variables, lr=p.lr, betas=(0.5, 0.9))
        cost, schedule = p.init_cost, _CostSchedule(p.init_cost, p.cost_multiplier, p.patience)
        best: Trigger | None = None
        reg_best, early_best, early_count = math.inf, math.inf, 0
        per_query = 1 + 2 * p.nes_samples
        for _ in range(p.epochs):
            order = torch.randperm(len(images), generator=generator).to(device)
            batches = list(order.split(p.batch_size))
            if budget is not None:
                affordable = budget // (per_query * p.batch_size)
                if affordable == 0:
                    break
                budget -= per_query * sum(len(b) for b in batches[:affordable])
                batches = batches[:affordable]
            successes, regs = [], []
            for batch in batches:
                optimizer.zero_grad(set_to_none=True)
                successes.append(objective(mask_raw, pattern_raw, images[batch], target))
                mask = to_unit(mask_raw)
                reg = mask.sum()
                loss = cost * reg
                if penalty is not None:
                    loss = loss + penalty(mask, to_unit(pattern_raw), images[batch], labels[batch], target)
                # gradients of the variables only: a penalty's model's own .grad stays untouched
                for variable, grad in zip(variables, torch.autograd.grad(loss, variables, allow_unused=True), strict=True):
                    if grad is not None:
                        variable.grad = variable.grad + grad
                optimizer.step()
                regs.append(reg.item())
            success, reg_mean = sum(successes) / len(successes), sum(regs) / len(regs)
            if success >= p.attack_success and reg_mean < reg_best:
                best = _trigger(mask_raw, pattern_raw)
                reg_best = reg_mean
            if reg_best < math.inf:
                early_count = early_count + 1 if reg_best >= early_best else 0
            early_best = min(reg_best, early_best)
            if schedule.went_up and schedule.went_down and early_count >= p.early_stop_patience:
                break
            cost = schedule.update(cost, success >= p.attack_success)
        trigger = best if best is not None else _trigger(mask_raw, pattern_raw)
        return Reconstruction(trigger, float(trigger.mask.abs().sum()), best is not None)

    def _estimated(self, query: QueryFunction, generator: torch.Generator) -> Objective:
        """The black-box objective: antithetic NES estimate of the cross-entropy gradient."""
        samples, sigma = self.params.nes_samples, self.params.nes_sigma

        def objective(mask_raw: Tensor, pattern_raw: Tensor, x: Tensor, target: int) -> float:
            with torch.no_grad():
                success = (query(_apply(mask_raw, pattern_raw, x)).argmax(1) == target).float().mean().item()
                grad_mask, grad_pattern = torch.zeros_like(mask_raw), torch.zeros_like(pattern_raw)
                for _ in range(samples):
                    u_mask = torch.randn(mask_raw.shape, generator=generator).to(x.device)
                    u_pattern = torch.randn(pattern_raw.shape, generator=generator).to(x.device)
                    plus = _query_ce(query, mask_raw + sigma * u_mask, pattern_raw + sigma * u_pattern, x, target)
                    minus = _query_ce(query, mask_raw - sigma * u_mask, pattern_raw - sigma * u_pattern, x, target)
                    scale = (plus - minus) / (2 * sigma * samples)
                    grad_mask += scale * u_mask
                    grad_pattern += scale * u_pattern
            mask_raw.grad, pattern_raw.grad = grad_mask, grad_pattern
            return success

        return objective


class _CostSchedule:
    """The reference code's adjustment of the L1 cost (a cost of 0 is reset to ``init_cost``
    after ``patience`` successful epochs)."""

    def __init__(self, init_cost: float, multiplier: float, patience: int) -> None:
        self.init_cost, self.up, self.down, self.patience = init_cost, multiplier, multiplier**1.5, patience
        self.set_count = self.up_count = self.down_count = 0
        self.went_up = self.went_down = False

    def update(self, cost: float, succeeded: bool) -> float:
        """The cost for the next epoch after one that did (or did not) reach the success threshold."""
        if cost == 0 and succeeded:
            self.set_count += 1
            if self.set_count >= self.patience:
                cost = self.init_cost
                self.up_count = self.down_count = 0
                self.went_up = self.went_down = False
        else:
            self.set_count = 0
        self.up_count, self.down_count = (self.up_count + 1, 0) if succeeded else (0, self.down_count + 1)
        if self.up_count >= self.patience:
            self.up_count, self.went_up = 0, True
            return cost * self.up
        if self.down_count >= self.patience:
            self.down_count, self.went_down = 0, True
            return cost / self.down
        return cost


def _apply(mask_raw: Tensor, pattern_raw: Tensor, x: Tensor) -> Tensor:
    mask = to_unit(mask_raw)
    return (1 - mask) * x + mask * to_unit(pattern_raw)


def _trigger(mask_raw: Tensor, pattern_raw: Tensor) -> Trigger:
    return Trigger(to_unit(mask_raw).detach().clone(), to_unit(pattern_raw).detach().clone())


def _autograd(model: nn.Module) -> Objective:
    """The white-box objective: the cross-entropy gradient by autograd."""

    def objective(mask_raw: Tensor, pattern_raw: Tensor, x: Tensor, target: int) -> float:
        model.eval()
        logits = model(_apply(mask_raw, pattern_raw, x))
        labels = torch.full((len(x),), target, device=x.device)
        loss = nn.functional.cross_entropy(logits, labels)
        # gradients of the variables only: the model's own .grad stays untouched
        mask_raw.grad, pattern_raw.grad = torch.autograd.grad(loss, [mask_raw, pattern_raw])
        return (logits.argmax(1) == target).float().mean().item()

    return objective


def _query_ce(query: QueryFunction, mask_raw: Tensor, pattern_raw: Tensor, x: Tensor, target: int) -> float:
    probabilities = query(_apply(mask_raw, pattern_raw, x))
    return -probabilities[:, target].clamp_min(1e-12).log().mean().item()
