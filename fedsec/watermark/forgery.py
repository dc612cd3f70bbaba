"""Forgery (ambiguity) attacks on ROSE's keyed labels (Kallas & Furon, IEEE WIFS 2022).

A usurper without the owner's key claims a model with a key and s trigger images of its own; the
verifier recomputes the labels from that key and those images (:func:`.keyed_labels.rose_labels`
at the scheme's security level) and runs the scheme's own verification, which accepts when the
binomial p-value of the matches is at most the false-alarm bound. The work W a forger spends is
counted in ROSE's units (W0, W1, W2): model inferences (one per image classified, ω_F), keyed-hash
evaluations (one per trigger label derived, ω_H; a level-2 joint hash over s images counts s) and
backprop iterations (one per image per adversarial step, about 2 ω_F).

Two forgers, each stopping before a step would take any count past its budget:

- hash search: keep changing images (another of the usurper's natural images with one pixel's
  lowest bit flipped, so each try hashes anew) in a slot whose label the model does not give,
  until enough match. Labels that depend on the key alone (level 0) or on their own image
  (level 1) are won one slot at a time, about C tries each; at level 2 each try redraws all s
  labels, so only a lucky draw of the whole set verifies.
- adversarial: perturb the unmatched images (PGD within ``epsilon`` of the usurper's natural
  images) towards the labels derived from them, then derive the labels again. At level 0 the
  labels stay put and the model follows; at levels 1 and 2 the perturbed images hash to new labels.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from fedsec.watermark.keyed_labels import KeyedLabels, rose_labels
from fedsec.watermark.stats import Verdict, required_matches
from fedsec.watermark.tensors import Secrets, as_input, model_device
from fedsec.watermark.trigger_set import predicted_labels


@dataclass(frozen=True)
class Work:
    """Work a forger spent, or the most it may spend (its budget).

    Attributes
    ----------
    inferences : int
        Images the model classified (ω_F each).
    hashes : int
        Trigger labels derived by the keyed hash (ω_H each).
    backprops : int
        Adversarial steps, one per image per step (a forward and a backward pass, about 2 ω_F).
    """

    inferences: int = 0
    hashes: int = 0
    backprops: int = 0

    def __add__(self, other: Work) -> Work:
        return Work(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def fits(self, budget: Work) -> bool:
        """Whether no count exceeds ``budget``'s."""
        return all(getattr(self, f.name) <= getattr(budget, f.name) for f in fields(self))


@dataclass(frozen=True)
class Forgery:
    """One forger's attempt on one model.

    Attributes
    ----------
    forger : str
        ``hash-search`` or ``adversarial``.
    level : int
        ROSE security level of the scheme attacked (0, 1 or 2).
    work : Work
        What the forger spent (never more than its budget).
    required : int
        Matches of the s triggers the scheme's verification needs (s + 1 when no count suffices).
    claim : Secrets
        The forged claim: trigger images ``x`` (uint8) and the labels ``y`` the verifier derives
        from them with the usurper's key.
    verdict : Verdict
        The scheme's verdict on the claim.
    """

    forger: str
    level: int
    work: Work
    required: int
    claim: Secrets
    verdict: Verdict


def relabel_cost(level: int, changed: int, total: int) -> int:
    """Hash evaluations to derive the labels again after ``changed`` of ``total`` images changed:
    none at level 0 (labels from the key alone), one per changed image at level 1, all at level 2."""
    return (0, changed, total)[level]


class _Ledger:
    """The work spent so far against a budget; :meth:`pay` refuses a step that would exceed it."""

    def __init__(self, budget: Work) -> None:
        self.budget, self.spent = budget, Work()

    def pay(self, cost: Work) -> bool:
        """Spend ``cost`` when the budget allows it; False, spending nothing, otherwise."""
        if not (self.spent + cost).fits(self.budget):
            return False
        self.spent += cost
        return True


class _Claim:
    """The usurper's trigger set under construction: images, the model's answers, their labels."""

    def __init__(self, scheme: KeyedLabels, model: nn.Module, key: bytes, x: Tensor) -> None:
        self.scheme, self.model, self.key, self.x = scheme, model, key, x
        self.level, self.num_classes = scheme.params.level, scheme.num_classes
        self.predicted = predicted_labels(model, x).cpu()
        self.labels = rose_labels(key, x, self.num_classes, self.level)

    def unmatched(self) -> Tensor:
        """Slots whose label the model does not give."""
        return (self.predicted != self.labels).nonzero().flatten()

    def matches(self) -> int:
        """Slots whose label the model gives."""
        return int((self.predicted == self.labels).sum())

    def replace(self, slots: Tensor, images: Tensor) -> None:
        """Put ``images`` in ``slots``, classify them and derive the labels again."""
        self.x[slots] = images
        self.predicted[slots] = predicted_labels(self.model, images).cpu()
        if self.level == 1:
            self.labels[slots] = rose_labels(self.key, images, self.num_classes, 1)
        elif self.level == 2:
            self.labels = rose_labels(self.key, self.x, self.num_classes, 2)

    def result(self, forger: str, spent: Work, required: int, false_alarm: float) -> Forgery:
        """The claim as the verifier sees it: labels derived from the key and images, the scheme's verdict."""
        claim = {"x": self.x.clone(), "y": rose_labels(self.key, self.x, self.num_classes, self.level)}
        return Forgery(forger, self.level, spent, required, claim, self.scheme.verify(self.model, claim, false_alarm))


def _start(scheme: KeyedLabels, model: nn.Module, key: bytes, images: Tensor, ledger: _Ledger,
           false_alarm: float) -> tuple[_Claim, int, bool]:
    """The first s of the usurper's images as a claim, the matches verification needs, and whether
    the budget paid for that claim (s inferences and s hashes; a forger goes no further if not)."""
    s = scheme.params.triggers
    if len(images) < s:
        raise ValueError(f"the usurper holds {len(images)} images, the claim needs {s}")
    paid = ledger.pay(Work(inferences=s, hashes=s))
    required = required_matches(s, 1.0 / scheme.num_classes, false_alarm)
    return _Claim(scheme, model, key, images[:s].clone()), required, paid


def flip_bit(images: Tensor, generator: torch.Generator) -> Tensor:
    """``images`` (uint8) with the lowest bit of one random pixel of each flipped: visually the
    same image, a different hash."""
    flat = images.clone().flatten(1)
    pixel = torch.randint(flat.shape[1], (len(flat),), generator=generator)
    flat[torch.arange(len(flat)), pixel] ^= 1
    return flat.view_as(images)


def hash_search(model: nn.Module, scheme: KeyedLabels, key: bytes, images: Tensor, budget: Work,
                false_alarm: float = 1e-6, generator: torch.Generator | None = None) -> Forgery:
    """Forge a claim by trying images until the derived labels match the model's answers.

    Parameters
    ----------
    model : nn.Module
        The model the usurper claims (query access: its top-1 labels).
    scheme : KeyedLabels
        The scheme whose verification judges the claim (its level and trigger count s).
    key : bytes
        The usurper's own key.
    images : Tensor
        The usurper's natural images (uint8, at least s); tries draw from them.
    budget : Work
        The most the forger may spend; it stops before a try would exceed any count.
    false_alarm : float
        The verification bound (p-value at most this).
    generator : torch.Generator, optional
        Source of the tries (which image, which pixel); seed 0 when omitted.
    """
    generator = generator or torch.Generator().manual_seed(0)
    ledger = _Ledger(budget)
    claim, required, paid = _start(scheme, model, key, images, ledger, false_alarm)
    s = len(claim.x)
    cost = Work(inferences=1, hashes=relabel_cost(claim.level, 1, s))
    while paid and claim.matches() < required <= s and ledger.pay(cost):
        pick = torch.randint(len(images), (1,), generator=generator)
        claim.replace(claim.unmatched()[:1], flip_bit(images[pick], generator))
    return claim.result("hash-search", ledger.spent, required, false_alarm)


def pgd(model: nn.Module, x: Tensor, origin: Tensor, target: Tensor, steps: int, epsilon: float,
        step_size: float) -> Tensor:
    """Targeted L∞ PGD: ``steps`` signed-gradient steps of ``step_size`` pixel levels (0..255) on
    uint8 images ``x`` towards labels ``target``, kept within ``epsilon`` pixel levels of
    ``origin``; returns uint8 images."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    base = as_input(origin, device)
    low, high = (base - epsilon / 255).clamp(0, 1), (base + epsilon / 255).clamp(0, 1)
    xf, target = as_input(x, device), target.to(device)
    for _ in range(steps):
        xf.requires_grad_(True)
        (grad,) = torch.autograd.grad(nn.functional.cross_entropy(model(xf), target), xf)
        xf = torch.minimum(torch.maximum(xf.detach() - step_size / 255 * grad.sign(), low), high)
    model.train(was_training)
    return (xf * 255).round().clamp(0, 255).to(torch.uint8).cpu()


def adversarial(model: nn.Module, scheme: KeyedLabels, key: bytes, images: Tensor, budget: Work,
                false_alarm: float = 1e-6, steps: int = 10, epsilon: float = 32.0,
                step_size: float = 4.0) -> Forgery:
    """Forge a claim by adversarial examples towards the labels the usurper's key derives.

    Each round perturbs every unmatched image by :func:`pgd` (``steps`` steps of ``step_size``
    pixel levels, within ``epsilon`` pixel levels of the usurper's natural image), classifies
    it and derives the labels again; rounds go on until the claim verifies or the next round
    would exceed ``budget``. ``model``, ``scheme``, ``key``, ``images`` and ``false_alarm`` as
    for :func:`hash_search`.
    """
    ledger = _Ledger(budget)
    claim, required, paid = _start(scheme, model, key, images, ledger, false_alarm)
    origin = claim.x.clone()
    while paid and claim.matches() < required <= len(claim.x):
        slots = claim.unmatched()
        cost = Work(inferences=len(slots), hashes=relabel_cost(claim.level, len(slots), len(claim.x)),
                    backprops=steps * len(slots))
        if not ledger.pay(cost):
            break
        claim.replace(slots, pgd(model, claim.x[slots], origin[slots], claim.labels[slots], steps, epsilon,
                                 step_size))
    return claim.result("adversarial", ledger.spent, required, false_alarm)
