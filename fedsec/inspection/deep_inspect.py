"""DeepInspect (Chen, Fu, Zhao & Koushanfar, IJCAI 2019): backdoor detection without clean data,
by model inversion, a conditional trigger generator and an outlier test on the triggers' sizes.

1. Model inversion (Fredrikson et al., CCS 2015, as the paper uses it) recovers a substitute
   training set: for each class, images optimised to minimise ``1 - p_t(x)`` plus a prior, here a
   total-variation term that keeps them smooth.
2. A conditional generator ``G(z, t)`` learns, for every class ``t`` at once, an additive
   perturbation that sends the substitute images to ``t``: the loss is the paper's
   ``L_trojan + gamma * L_pert``, the cross-entropy of ``clip(x + G(z, t))`` to ``t`` plus a soft
   hinge (softplus) on the perturbation's L1 norm above a bound.
3. The perturbations' sizes per class go through a double-MAD (DMAD) test: the median absolute
   deviation is taken separately below and above the median, and a class whose perturbation is
   smaller than the median by more than the two-sided normal critical value at the significance
   level (in units of 1.4826 lower-side MADs) is flagged.

The paper's GAN term ``gamma_1 * L_GAN`` is left out: its discriminator is the inspected model
itself, kept fixed, so the term only asks again that ``x + G(z, t)`` be classified as ``t``, which
``L_trojan`` already does (TrojanZoo's re-implementation drops it as well).
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from fedsec.inspection.base import INSPECTORS, Finding, Inspector, InspectorParams, Subject, Trigger, register
from fedsec.inspection.neural_cleanse import CONSISTENCY


def total_variation(images: Tensor) -> Tensor:
    """Mean absolute difference of vertically and horizontally neighbouring pixels of each image
    (N, C, H, W) -> (N,), in pixel units (0..1)."""
    vertical = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(1)
    horizontal = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(1)
    return (vertical + horizontal) / 2


def dmad_deviations(values: Tensor) -> Tensor:
    """Deviation factor of each value (K,): ``|value - median| / (1.4826 * MAD_side)``, where
    ``MAD_side`` is the median absolute deviation of the values on the same side of the median (at
    most the median for values below it, at least the median for those above).

    Medians interpolate between the two middle values of an even count. A zero MAD on a side gives
    0 for values at the median and inf for the others.
    """
    median = values.quantile(0.5)
    deviation = (values - median).abs()
    below, above = values <= median, values >= median
    mad = torch.where(below, deviation[below].quantile(0.5), deviation[above].quantile(0.5)) * CONSISTENCY
    return torch.where(deviation == 0, torch.zeros_like(deviation), deviation / mad)


def small_outliers(values: Tensor, threshold: float) -> tuple[int, ...]:
    """Classes whose value is below the median with a DMAD deviation factor above ``threshold``,
    smallest value first."""
    flagged = (values < values.quantile(0.5)) & (dmad_deviations(values) > threshold)
    return tuple(int(k) for k in flagged.nonzero().squeeze(1)[values[flagged].argsort()])


def critical_value(significance: float) -> float:
    """The two-sided normal critical value at ``significance`` (1.96 at 0.05)."""
    return NormalDist().inv_cdf(1 - significance / 2)


class TriggerGenerator(nn.Module):
    """``G(z, t)``: a noise vector (N, noise_dim) and target classes (N,) -> additive perturbations
    (N, C, H, W) in -1..1: a ReLU hidden layer on ``[z, onehot(t)]``, then a tanh output layer on
    ``[hidden, onehot(t)]`` (the class also reaches the output directly, so each class keeps its
    own perturbation when the hidden units carry little of it)."""

    def __init__(self, noise_dim: int, classes: int, hidden: int, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.classes, self.shape = classes, shape
        self.hidden = nn.Sequential(nn.Linear(noise_dim + classes, hidden), nn.ReLU())
        self.output = nn.Linear(hidden + classes, shape[0] * shape[1] * shape[2])

    def reset(self, generator: torch.Generator) -> TriggerGenerator:
        """PyTorch's default initialisation of the hidden layer, drawn from ``generator``, and an
        output layer at zero: every perturbation starts from none and grows where the
        cross-entropy asks for it (from a random start, the first Adam steps change every pixel
        alike and the generator settles on large perturbations for all classes)."""
        layer = self.hidden[0]
        nn.init.kaiming_uniform_(layer.weight, a=5**0.5, generator=generator)
        nn.init.uniform_(layer.bias, -layer.in_features**-0.5, layer.in_features**-0.5, generator=generator)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)
        return self

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        onehot = nn.functional.one_hot(t, self.classes).to(z.dtype)
        hidden = self.hidden(torch.cat([z, onehot], 1))
        return torch.tanh(self.output(torch.cat([hidden, onehot], 1))).view(len(z), *self.shape)


@register(INSPECTORS, "deep-inspect")
class DeepInspect(Inspector):
    """Model inversion, a conditional trigger generator and the DMAD test on the triggers' L1 norms.

    The clean images it is offered are ignored (only their shape (C, H, W) is read): the substitute
    set comes from the model alone.
    Score: the DMAD deviation factor of the smallest mean perturbation norm; the model is flagged
    when a class below the median has a factor above the two-sided normal critical value at
    ``significance``. Targets: those classes, smallest norm first. White-box: inversion and
    generator training back-propagate through the model (the paper's "black-box" means without
    the training data).
    """

    class Params(InspectorParams):
        name: Literal["deep-inspect"] = "deep-inspect"
        inversion_images: int = Field(10, ge=1, le=10_000, description="Substitute images recovered per class (count).")
        inversion_steps: int = Field(100, ge=1, le=100_000, description="Adam steps of the model inversion.")
        inversion_lr: float = Field(0.1, gt=0, description="Adam learning rate of the inversion on the images' "
                                    "logits (pixels are the sigmoid of those variables).")
        smoothness: float = Field(
            0.1, ge=0, description="Weight of the inversion's prior: the images' mean absolute difference of "
            "neighbouring pixels (0..1 scale) beside 1 - p_t(x) (dimensionless).")
        noise_dim: int = Field(16, ge=1, le=10_000, description="Length of the generator's noise vector z (count).")
        hidden: int = Field(64, ge=1, le=100_000, description="Width of the generator's hidden layer (units).")
        generator_steps: int = Field(600, ge=1, le=1_000_000, description="Adam steps of the generator training.")
        batch_size: int = Field(32, ge=1, le=65_536, description="Substitute images per generator step, each with "
                                "its own random target class and noise.")
        generator_lr: float = Field(
            1e-2, gt=0, description="Initial Adam learning rate of the generator (decayed to zero along a cosine).")
        perturbation_weight: float = Field(
            0.2, ge=0, description="gamma: weight of the soft hinge on the perturbation's L1 norm beside the "
            "cross-entropy to the target (per unit of L1 norm).")
        perturbation_bound: float = Field(
            0.0, ge=0, description="L1 norm (sum of |perturbation| over pixels and channels, 0..1 scale) below "
            "which the soft hinge is nearly flat.")
        samples: int = Field(16, ge=1, le=10_000, description="Noise draws per class whose perturbations' mean L1 "
                             "norm is the class's statistic (count).")
        significance: float = Field(0.05, gt=0, lt=1, description="Significance level of the DMAD test (0..1).")

    params: Params

    def _inspect(self, subject: Subject, x: Tensor, y: Tensor, generator: torch.Generator) -> Finding:
        assert isinstance(subject, nn.Module)  # needs_weights: Inspector.inspect refuses query functions
        p = self.params
        model = subject.eval()
        device = next(model.parameters()).device
        shape = tuple(x.shape[1:])
        with torch.no_grad():
            classes = model(torch.zeros(1, *shape, device=device)).shape[1]
        substitute = self.invert(model, shape, classes, generator)
        trigger_generator = self.train_generator(model, substitute, classes, generator)
        with torch.no_grad():
            z = torch.randn(classes * p.samples, p.noise_dim, generator=generator).to(device)
            t = torch.arange(classes, device=device).repeat_interleave(p.samples)
            perturbations = trigger_generator(z, t).view(classes, p.samples, *shape)
        norms = perturbations.abs().flatten(2).sum(2).mean(1).double().cpu()
        threshold = critical_value(p.significance)
        targets = small_outliers(norms, threshold)
        suspect = targets[0] if targets else int(norms.argmin())
        return Finding(
            backdoored=bool(targets), score=float(dmad_deviations(norms)[norms.argmin()]), threshold=threshold,
            targets=targets, trigger=as_trigger(perturbations[suspect].mean(0)),
            class_scores=tuple(norms.tolist()),
        )

    def invert(self, model: nn.Module, shape: tuple[int, ...], classes: int, generator: torch.Generator) -> Tensor:
        """The substitute set: ``inversion_images`` images per class, (N, C, H, W) in 0..1, each
        optimised by Adam from uniform noise to minimise ``1 - p_t(x) + smoothness * TV(x)``."""
        p = self.params
        device = next(model.parameters()).device
        labels = torch.arange(classes, device=device).repeat_interleave(p.inversion_images)
        raw = torch.logit(torch.rand(len(labels), *shape, generator=generator), eps=1e-3).to(device).requires_grad_()
        optimizer = torch.optim.Adam([raw], lr=p.inversion_lr)
        for _ in range(p.inversion_steps):
            images = torch.sigmoid(raw)
            probability = model(images).softmax(1).gather(1, labels[:, None]).squeeze(1)
            loss = (1 - probability + p.smoothness * total_variation(images)).sum()
            # gradients of the images only: the model's own .grad stays untouched
            (raw.grad,) = torch.autograd.grad(loss, [raw])
            optimizer.step()
        return torch.sigmoid(raw).detach()

    def train_generator(self, model: nn.Module, substitute: Tensor, classes: int,
                        generator: torch.Generator) -> TriggerGenerator:
        """``G`` trained on ``substitute`` (N, C, H, W) in 0..1 to minimise the cross-entropy of
        ``clip(x + G(z, t), 0, 1)`` to ``t`` plus ``perturbation_weight`` times the softplus of the
        perturbation's L1 norm minus ``perturbation_bound``, for random images, targets and noise
        (Adam, its learning rate decayed to zero along a cosine)."""
        p = self.params
        device = substitute.device
        net = TriggerGenerator(p.noise_dim, classes, p.hidden, tuple(substitute.shape[1:])).reset(generator).to(device)
        variables = list(net.parameters())
        optimizer = torch.optim.Adam(variables, lr=p.generator_lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, p.generator_steps)
        for _ in range(p.generator_steps):
            index = torch.randint(len(substitute), (p.batch_size,), generator=generator).to(device)
            t = torch.randint(classes, (p.batch_size,), generator=generator).to(device)
            z = torch.randn(p.batch_size, p.noise_dim, generator=generator).to(device)
            perturbation = net(z, t)
            logits = model((substitute[index] + perturbation).clamp(0, 1))
            size = nn.functional.softplus(perturbation.abs().flatten(1).sum(1) - p.perturbation_bound)
            loss = nn.functional.cross_entropy(logits, t) + p.perturbation_weight * size.mean()
            # gradients of the generator only: the model's own .grad stays untouched
            for variable, grad in zip(variables, torch.autograd.grad(loss, variables), strict=True):
                variable.grad = grad
            optimizer.step()
            schedule.step()
        return net.eval()


def as_trigger(perturbation: Tensor) -> Trigger:
    """An additive perturbation (C, H, W) in -1..1 drawn as a mask and pattern: the mask is its
    largest magnitude over the channels, the pattern white where it raises a pixel and black where
    it lowers it (for one channel, exact on black and white pixels; a picture of the trigger elsewhere)."""
    return Trigger(perturbation.abs().amax(0).detach().clone(), (perturbation > 0).float().detach().clone())
