"""Entangled watermarks, EWE (Jia et al., USENIX Security 2021).

The secret is a source class s, a target class t and a square patch: the triggers are images of
class s carrying the patch, labelled t. Embedding alternates ``ratio`` clean steps with one
watermark step on triggers and as many target-class images, all labelled t, whose loss is the
cross-entropy minus κ times the soft nearest-neighbour loss (SNNL, Frosst et al. 2019; with the ε of
their code and the authors', which bounds it) between triggers and target images on hidden layers:
maximising it makes the triggers share the target class's features, so a copy trained on the model's
answers to natural images inherits the watermark. After each watermark step every layer's
temperature takes one gradient step that minimises its SNNL, as in the paper. The patch sits where
the SNNL's input gradient is smallest (as in the authors' code) on a proxy model the owner trains on
its own images (the global model does not exist when the secrets are drawn): it first separates the
triggers from the target class, so a model without the watermark rarely labels them t. Then, as in
the authors' code, signed input-gradient steps on the proxy perturb the triggers: towards a higher
SNNL with the target images, and away from class t while the proxy labels too many of them t.
Verification is trigger accuracy against 1/C, as for the other trigger-set schemes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Literal, Self

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from fedsec.watermark.base import (
    WATERMARKS,
    OwnerPool,
    Secrets,
    WatermarkParams,
    key_generator,
)
from fedsec.watermark.settings import EmbeddingConfig
from fedsec.watermark.tensors import as_input, model_device
from fedsec.watermark.trigger_set import TriggerSetWatermark

MIN_TEMPERATURE = 1e-3  # the temperature's gradient step must keep it positive
MAX_AWAY_STEPS = 50  # the authors' code: at most 50 steps away from t over the whole perturbation
FINAL_AWAY_STEPS = 5  # the authors' code: 5 steps away from t after the last SNNL step


def snnl(x: Tensor, labels: Tensor, temperature: Tensor, metric: str = "euclidean", epsilon: float = 0.0) -> Tensor:
    """Soft nearest-neighbour loss of the rows of ``x`` (flattened) with ``labels`` at ``temperature``:
    −mean_i log(ε + Σ_{j≠i, y_j=y_i} e^{−d_ij/T} / (ε + Σ_{k≠i} e^{−d_ik/T})), d the squared Euclidean or
    the cosine distance; ``epsilon`` 0 is Frosst et al.'s formula, a positive one the stabilised form of
    their code and of EWE's, bounded by −log ε. Every label needs two rows."""
    x = x.flatten(1)
    if metric == "cosine":
        unit = nn.functional.normalize(x, dim=1)
        distance = 1.0 - unit @ unit.T
    else:
        squares = x.pow(2).sum(1)
        distance = (squares[:, None] + squares[None, :] - 2.0 * x @ x.T).clamp_min(0.0)
    self_pair = torch.eye(len(x), dtype=torch.bool, device=x.device)
    logits = (-distance / temperature).masked_fill(self_pair, float("-inf"))
    same = (labels[:, None] == labels[None, :]) & ~self_pair
    log_same, log_every = torch.logsumexp(logits.masked_fill(~same, float("-inf")), 1), torch.logsumexp(logits, 1)
    if not epsilon:
        return -(log_same - log_every).mean()
    log_epsilon = torch.tensor(math.log(epsilon), dtype=logits.dtype, device=logits.device)
    return -torch.logaddexp(log_same - torch.logaddexp(log_every, log_epsilon), log_epsilon).mean()


def hidden_layers(model: nn.Module, names: list[str] | None) -> list[nn.Module]:
    """The modules whose outputs are entangled: ``names``, or by default the last three
    convolution or linear modules before the output layer."""
    modules = dict(model.named_modules())
    if names is not None:
        unknown = [name for name in names if name not in modules]
        if unknown:
            raise ValueError(f"{', '.join(map(repr, unknown))} not modules of the model")
        return [modules[name] for name in names]
    weighted = [m for m in modules.values() if isinstance(m, (nn.Conv2d, nn.Linear))][:-1]
    if not weighted:
        raise ValueError("the model has no hidden convolution or linear module")
    return weighted[-3:]


def forward_with_hidden(model: nn.Module, layers: list[nn.Module], x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """The logits of ``model`` on float images ``x`` and the ReLU of each layer's output (flattened)."""
    captured: list[Tensor] = []
    handles = [layer.register_forward_hook(lambda _, __, out: captured.append(out)) for layer in layers]
    try:
        logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return logits, [torch.relu(out).flatten(1) for out in captured]


def stamp(x: Tensor, row: int, column: int, size: int, fill: int) -> Tensor:
    """uint8 images with a ``size``×``size`` square of value ``fill`` at (row, column) in every channel."""
    stamped = x.clone()
    stamped[:, :, row:row + size, column:column + size] = fill
    return stamped


@WATERMARKS.register("ewe")
class Ewe(TriggerSetWatermark):
    """Patched source-class images labelled with the target class, entangled with it by the SNNL."""

    class Params(WatermarkParams):
        name: Literal["ewe"] = "ewe"
        triggers: int = Field(
            100, ge=2, description="Trigger images n (source-class images from the owner's pool).")
        source: int | None = Field(
            None, ge=0, description="Source class s whose images carry the trigger (default: drawn from the key).")
        target: int | None = Field(
            None, ge=0, description="Target class t the triggers are labelled with (default: drawn from the key, "
            "not s).")
        patch: int = Field(3, ge=1, description="Side of the square trigger patch in pixels (the paper: 3).")
        fill: int = Field(
            255, ge=0, le=255, description="Pixel value of the patch (0..255; the paper: the maximum).")
        location: Literal["saliency", "fixed"] = Field(
            "saliency", description="saliency: the patch window with the smallest summed SNNL input gradient "
            "on a proxy model (the paper's saliency, the authors' sign); fixed: the bottom-right corner.")
        saliency_steps: int = Field(
            300, ge=1, description="SGD steps of the proxy model the owner trains on its own images before "
            "reading the saliency or perturbing the triggers.")
        perturbation_steps: int = Field(
            10, ge=0, description="Signed-gradient steps on the trigger pixels that raise their SNNL with the "
            "target images on the proxy model (the authors' maxiter, 10; 0: the triggers stay as stamped).")
        perturbation_lr: float = Field(
            0.01, gt=0, le=1, description="Size of each signed-gradient step on the trigger pixels (0..1 pixel "
            "scale; the authors' w_lr, 0.01).")
        false_watermark_rate: float = Field(
            0.1, ge=0, le=1, description="Share of the triggers the proxy may label t: above it, the perturbation "
            "steps the triggers away from t first (the authors' threshold, 0.1 = 1/C on 10 classes).")
        layers: list[str] | None = Field(
            None, min_length=1, description="Modules whose ReLU'd outputs are entangled (default: the last three "
            "convolution or linear modules before the output layer).")
        weight: float = Field(
            0.25, ge=0, description="κ: weight of the SNNL, summed over layers, next to the mean cross-entropy "
            "of the watermark step (dimensionless; the authors' Fashion-MNIST setting: 32 per layer against a "
            "cross-entropy summed over batches of 128; 0: the paper's baseline, the same triggers learnt "
            "without entanglement).")
        temperature: float = Field(
            100.0, gt=0, description="Initial temperature T of every layer's SNNL (distance units).")
        temperature_lr: float = Field(
            0.1, ge=0,
            description="Step size η of T ← T − η ∂SNNL/∂T after each watermark step (0: fixed T).")
        metric: Literal["euclidean", "cosine"] = Field(
            "euclidean", description="Distance in the SNNL: squared Euclidean (the paper's formula) or cosine "
            "(the authors' code).")
        epsilon: float = Field(
            1e-5, ge=0, lt=1, description="ε (dimensionless) of the SNNL's stabilised form, "
            "−log(ε + Σ_same e^(−d/T) / (ε + Σ e^(−d/T))), as in the authors' code and Frosst et al.'s (1e-5): it bounds the SNNL by −log ε, so "
            "that maximising it cannot push hidden activations without limit (0: the paper's formula, "
            "unbounded).")
        ratio: int = Field(2, ge=1, description="r: clean steps per watermark step.")
        stop_at_target: bool = Field(
            False, description="Stop at embedding.target like the other schemes; by default every embedding "
            "runs embedding.max_steps steps, since the SNNL keeps entangling after the triggers are learnt.")

        @model_validator(mode="after")
        def _distinct(self) -> Self:
            if self.source is not None and self.source == self.target:
                raise ValueError("source and target must be different classes")
            return self

    params: Params

    def check(self, model: nn.Module, ciphertext_slots: int | None) -> list[str]:
        problems = [f"{name}: class {value} is not below the {self.num_classes} classes"
                    for name, value in (("source", self.params.source), ("target", self.params.target))
                    if value is not None and value >= self.num_classes]
        try:
            hidden_layers(model, self.params.layers)
        except ValueError as exc:
            problems.append(f"layers: {exc}")
        return problems

    def classes(self, key: bytes) -> tuple[int, int]:
        """(s, t): the parameters', a missing one drawn from the key (distinct from the other)."""
        p, c = self.params, self.num_classes
        generator = key_generator(key, "ewe-classes")
        drawn = int(torch.randint(0, c, (), generator=generator))
        shift = int(torch.randint(1, c, (), generator=generator))
        if p.target is None:
            source = drawn if p.source is None else p.source
            return source, (source + shift) % c
        return (p.target + shift) % c if p.source is None else p.source, p.target

    def create(self, key: bytes, pool: OwnerPool, model: nn.Module) -> Secrets:
        p = self.params
        source, target = self.classes(key)
        x, y = pool.take(min(len(pool.y) - pool.taken, 20 * p.triggers))
        sources, targets = (y == source).nonzero().flatten(), (y == target).nonzero().flatten()
        if len(sources) < p.triggers or len(targets) < p.triggers:
            raise ValueError(f"the owner's pool has too few images of class {source} or {target} for {p.triggers} "
                             "triggers")
        source_x, target_x = x[sources[: p.triggers]], x[targets[: p.triggers]]
        _, _, height, width = x.shape
        proxy = (self.proxy(model, x, y, key_generator(key, "ewe-proxy"))
                 if p.location == "saliency" or p.perturbation_steps else None)
        if p.location == "fixed":
            row, column = height - p.patch, width - p.patch
        else:
            row, column = self.saliency(proxy, source_x, target_x)
        triggers = stamp(source_x, row, column, p.patch, p.fill)
        if p.perturbation_steps:
            triggers = self.perturb(proxy, triggers, target_x, target)
        return {
            "x": triggers,
            "y": torch.full((p.triggers,), target, dtype=torch.int64),
            "target_x": target_x.clone(),
            "position": torch.tensor([row, column]),
        }

    def proxy(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> nn.Module:
        """A copy of ``model`` trained on the owner's images for ``saliency_steps`` SGD steps."""
        proxy = copy.deepcopy(model).train()
        device = model_device(proxy)
        optimizer = torch.optim.SGD(proxy.parameters(), lr=0.05, momentum=0.9)
        for _ in range(self.params.saliency_steps):
            pick = torch.randint(0, len(y), (64,), generator=generator)
            loss = nn.functional.cross_entropy(proxy(as_input(x[pick], device)), y[pick].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return proxy.eval()

    def saliency(self, model: nn.Module, source_x: Tensor, target_x: Tensor) -> tuple[int, int]:
        """(row, column) of the patch window where raising the source images' pixels lowers the
        summed SNNL against the target images most (mean input gradient over images and channels)."""
        device = model_device(model)
        sources = as_input(source_x, device).requires_grad_(True)
        (gradient,) = torch.autograd.grad(self.entanglement(model, sources, as_input(target_x, device)), sources)
        windows = nn.functional.avg_pool2d(gradient.mean((0, 1))[None, None], self.params.patch, stride=1)[0, 0]
        best = int(windows.flatten().argmin())
        return best // windows.shape[1], best % windows.shape[1]

    def entanglement(self, model: nn.Module, triggers: Tensor, targets: Tensor) -> Tensor:
        """The SNNL between float images ``triggers`` and ``targets``, summed over the hidden layers,
        at the initial temperature: what the saliency and the perturbation read on the proxy."""
        p, device = self.params, model_device(model)
        labels = torch.cat([torch.ones(len(triggers)), torch.zeros(len(targets))]).to(device)
        _, hidden = forward_with_hidden(model, hidden_layers(model, p.layers), torch.cat([triggers, targets]))
        temperature = torch.tensor(p.temperature, device=device)
        return sum(snnl(h, labels, temperature, p.metric, p.epsilon) for h in hidden)

    def perturb(self, model: nn.Module, triggers: Tensor, target_x: Tensor, target: int) -> Tensor:
        """The authors' trigger perturbation on ``model`` (the proxy): ``perturbation_steps`` signed
        steps up the SNNL between the triggers and ``target_x``, each preceded, while ``model`` labels
        more than ``false_watermark_rate`` of the triggers t, by signed steps down t's logit (at most
        50 in all), then 5 such steps; returns uint8 images. The authors perturb batches of 64 triggers
        against 64 target images and keep float pixels; here all triggers at once, rounded to 8 bits."""
        p, device = self.params, model_device(model)
        x, targets = as_input(triggers, device), as_input(target_x, device)

        def step(x: Tensor, objective: Callable[[Tensor], Tensor], sign: float) -> Tensor:
            x = x.detach().requires_grad_(True)
            (gradient,) = torch.autograd.grad(objective(x), x)
            return (x + sign * p.perturbation_lr * gradient.sign()).clamp(0.0, 1.0).detach()

        def target_logit(x: Tensor) -> Tensor:
            return model(x)[:, target].sum()

        def labelled_target(x: Tensor) -> float:
            with torch.no_grad():
                return (model(x).argmax(1) == target).float().mean().item()

        away = 0
        for _ in range(p.perturbation_steps):
            while away < MAX_AWAY_STEPS and labelled_target(x) > p.false_watermark_rate:
                x, away = step(x, target_logit, -1.0), away + 1
            x = step(x, lambda x: self.entanglement(model, x, targets), 1.0)
        for _ in range(FINAL_AWAY_STEPS):
            x = step(x, target_logit, -1.0)
        return x.mul(255.0).round().to(torch.uint8).cpu()

    def terms(self, model: nn.Module, secrets: Secrets, temperature: Tensor, generator: torch.Generator,
              batch_size: int) -> tuple[Tensor, Tensor]:
        """The watermark step's cross-entropy on ``batch_size`` triggers and as many target images (all
        labelled t), and the SNNL (L,) of each hidden layer between the two halves at ``temperature`` (L,)."""
        p, device = self.params, model_device(model)
        n = max(2, batch_size)
        triggers = secrets["x"][torch.randperm(len(secrets["x"]), generator=generator)[:n]]
        targets = secrets["target_x"][torch.randperm(len(secrets["target_x"]), generator=generator)[:n]]
        images = as_input(torch.cat([triggers, targets]), device)
        labels = torch.cat([torch.ones(len(triggers)), torch.zeros(len(targets))]).to(device)
        logits, hidden = forward_with_hidden(model, hidden_layers(model, p.layers), images)
        target = torch.full((len(images),), int(secrets["y"][0]), device=device)
        entanglement = torch.stack([snnl(h, labels, t, p.metric, p.epsilon)
                                    for h, t in zip(hidden, temperature, strict=True)])
        return nn.functional.cross_entropy(logits, target), entanglement

    def initial_temperature(self, model: nn.Module) -> Tensor:
        """Every layer's starting temperature (L,) on the model's device."""
        count = len(hidden_layers(model, self.params.layers))
        return torch.full((count,), self.params.temperature, device=model_device(model))

    def loss(self, model: nn.Module, secrets: Secrets, generator: torch.Generator, batch_size: int) -> Tensor:
        ce, entanglement = self.terms(model, secrets, self.initial_temperature(model), generator, batch_size)
        return ce - self.params.weight * entanglement.sum()

    def embed(self, model: nn.Module, secrets: Secrets, clean_x: Tensor, clean_y: Tensor,
              settings: EmbeddingConfig, generator: torch.Generator) -> int:
        """Alternate ``ratio`` clean SGD steps with one watermark step; after each watermark step the
        temperatures (starting afresh at every embedding) take their gradient step."""
        p, device = self.params, model_device(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
        clean_x, clean_y = clean_x.to(device), clean_y.to(device)
        temperature = self.initial_temperature(model)
        steps = 0
        while steps < settings.max_steps:
            if (p.stop_at_target and steps % settings.check_every == 0
                    and self.score(model, secrets) >= settings.target):
                break
            model.train()
            optimizer.zero_grad(set_to_none=True)
            if steps % (p.ratio + 1) == p.ratio:
                temperature.requires_grad_(True)
                batch = settings.trigger_batch_size
                ce, entanglement = self.terms(model, secrets, temperature, generator, batch)
                (snnl_by_temperature,) = torch.autograd.grad(entanglement.sum(), temperature, retain_graph=True)
                (ce - p.weight * entanglement.sum()).backward()
                temperature = (temperature.detach() - p.temperature_lr * snnl_by_temperature).clamp_min(
                    MIN_TEMPERATURE)
            else:
                pick = torch.randint(0, len(clean_y), (settings.batch_size,), generator=generator).to(device)
                nn.functional.cross_entropy(model(as_input(clean_x[pick], device)), clean_y[pick]).backward()
            optimizer.step()
            steps += 1
        return steps
