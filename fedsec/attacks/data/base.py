"""Data poisoning: the interface every poisoning method implements, and its registry.

Images are uint8 tensors ``(B, C, H, W)`` on the 0–255 scale, labels int64 ``(B,)``.
A method only says how to trigger images and which labels it wants; choosing the
poisoned rows, copying and relabelling are done here once for all of them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, NamedTuple, Self

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from fedsec.attacks.spec import AttackParams, resolve
from fedsec.registry import Registry

TargetMode = Literal["all-to-one", "all-to-all"]


class DataAttackParams(AttackParams):
    """Parameters every data poisoning method has."""

    target_label: int = Field(0, ge=0, description="Class the attack sends inputs to (all-to-one mode).")
    target_mode: TargetMode = Field(
        "all-to-one",
        description="all-to-one: every triggered input goes to target_label; "
        "all-to-all: an input of class y goes to (y + 1) mod num_classes.",
    )
    poison_fraction: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Fraction (0–1) of the eligible rows of each batch that are poisoned; the count is "
        "rounded stochastically so that its mean is exact even on small batches.",
    )
    num_classes: int = Field(10, ge=2, description="Number of classes C of the task.")

    @model_validator(mode="after")
    def _target_is_a_class(self) -> Self:
        if self.target_label >= self.num_classes:
            raise ValueError(f"target_label {self.target_label} is not below num_classes {self.num_classes}")
        return self


class PoisonedBatch(NamedTuple):
    """A poisoned copy of a batch: images, labels and which rows carry the attack."""

    x: Tensor
    y: Tensor
    mask: Tensor


class CraftingContext(NamedTuple):
    """What a client holds when it crafts poisons with the model before training.

    ``models``: the global model of this round first, then the earlier global models this client
    received (surrogates), latest first; ``test_x``/``test_y``: the test set the targets are chosen
    from (uint8 images, labels); ``generator``: the client's randomness this round.
    """

    models: Sequence[nn.Module]
    test_x: Tensor
    test_y: Tensor
    generator: torch.Generator


class DataAttack(ABC):
    """A data poisoning method: a training-time trigger, a test-time trigger and a label map.

    Subclasses declare ``Params`` and implement :meth:`_train_trigger`; they override
    :meth:`_test_trigger`, :meth:`eligible`, :meth:`target_labels`, :meth:`asr_mask`,
    :meth:`test_triggers` or :meth:`check` only where they differ from a dirty-label backdoor.
    """

    Params: ClassVar[type[DataAttackParams]]

    def __init__(self, params: DataAttackParams) -> None:
        self.params = params

    @classmethod
    def for_attacker(cls, params: DataAttackParams, attacker_index: int | None = None) -> Self:
        """The attack as run by the ``attacker_index``-th malicious client (0-based).

        Most methods are the same for every attacker; DBA gives each one its part.
        """
        return cls(params)

    @abstractmethod
    def _train_trigger(self, x: Tensor) -> Tensor:
        """Training-time trigger applied to every row of uint8 ``x``; a new uint8 tensor."""

    def _test_trigger(self, x: Tensor) -> Tensor:
        """Test-time trigger; the training-time one unless the method says otherwise."""
        return self._train_trigger(x)

    def eligible(self, y: Tensor) -> Tensor:
        """Rows that may be poisoned, bool ``(B,)``: every row for a dirty-label backdoor."""
        return torch.ones_like(y, dtype=torch.bool)

    def target_labels(self, y: Tensor) -> Tensor:
        """Label the attacker wants for an input of true class ``y``, ``(B,)`` like ``y``."""
        if self.params.target_mode == "all-to-all":
            return (y + 1) % self.params.num_classes
        return torch.full_like(y, self.params.target_label)

    def asr_mask(self, y: Tensor) -> Tensor:
        """Test rows that count in the attack success rate (docs/metrics.md), bool ``(B,)``.

        All-to-one: samples whose true label is not the target; all-to-all: every sample.
        """
        if self.params.target_mode == "all-to-all":
            return torch.ones_like(y, dtype=torch.bool)
        return y != self.params.target_label

    def apply_test_trigger(self, x: Tensor) -> Tensor:
        """Trigger every row of ``x`` as the evaluator does to measure the attack success rate."""
        check_images(x)
        return self._test_trigger(x)

    def test_triggers(self) -> dict[str, Callable[[Tensor], Tensor]]:
        """The triggers the evaluator scores, by metric name: ``asr`` for :meth:`apply_test_trigger`,
        plus any the method also scores alone (DBA's parts)."""
        return {"asr": self.apply_test_trigger}

    def surrogate_models(self) -> int:
        """Global models :meth:`craft` uses (this round's and earlier ones); 0: it does not craft."""
        return 0

    def craft(self, x: Tensor, y: Tensor, context: CraftingContext) -> PoisonedBatch | None:
        """The client's whole partition (uint8 ``x``, labels ``y``) with poisons crafted on
        ``context`` before local training; None: the method poisons batch by batch in :meth:`poison`."""
        return None

    def poison_count(self, y: Tensor) -> int:
        """Poisons a client whose labels are ``y`` holds: crafted ones, or the expected poisoned
        rows per pass over its data (``poison_fraction`` of the eligible rows)."""
        return round(self.params.poison_fraction * int(self.eligible(y).sum()))

    def check(self, image_shape: tuple[int, int, int], num_classes: int) -> list[str]:
        """Why the parameters do not fit images of ``image_shape`` (C, H, W) from ``num_classes``
        classes: one line each, naming the parameter; none by default."""
        return []

    def poison(self, x: Tensor, y: Tensor, generator: torch.Generator) -> PoisonedBatch:
        """Poison ``poison_fraction`` of the eligible rows of a batch (rows drawn from ``generator``).

        Returns new tensors (the inputs are never modified): triggered uint8 images,
        target labels on the poisoned rows, and the bool ``(B,)`` mask of those rows.
        """
        check_images(x)
        if y.shape != x.shape[:1]:
            raise ValueError(f"labels of shape {tuple(y.shape)} do not match {x.shape[0]} images")
        mask = choose_rows(self.eligible(y), self.params.poison_fraction, generator)
        x_out, y_out = x.clone(), y.clone()
        if mask.any():
            x_out[mask] = self._train_trigger(x[mask])
            y_out[mask] = self.target_labels(y[mask])
        return PoisonedBatch(x_out, y_out, mask)


def choose_rows(eligible: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """Draw ``fraction`` of the ``eligible`` rows uniformly without replacement, bool ``(B,)``.

    The count ``fraction × n_eligible`` is rounded up with probability equal to its
    fractional part, so 0 picks none, 1 picks all and the mean count is exact.
    """
    expected = fraction * int(eligible.sum())
    count = math.floor(expected)
    draws = torch.rand(eligible.numel() + 1, generator=generator, device=generator.device).to(eligible.device)
    count += int(draws[0].item() < expected - count)
    scores = draws[1:].masked_fill(~eligible, 2.0)  # ineligible rows sort last
    chosen = torch.zeros_like(eligible)
    chosen[scores.topk(count, largest=False).indices] = True
    return chosen


def to_uint8(x: Tensor) -> Tensor:
    """Round a float image to the nearest integer and clamp it to 0–255 as uint8."""
    return x.round().clamp(0, 255).to(torch.uint8)


def check_images(x: Tensor) -> None:
    """ValueError unless ``x`` is a uint8 batch of images (B, C, H, W)."""
    if x.dtype != torch.uint8 or x.dim() != 4:
        raise ValueError(f"expected uint8 images (B, C, H, W), got {x.dtype} of shape {tuple(x.shape)}")


DATA_ATTACKS: Registry[type[DataAttack]] = Registry("data attack")


def build_data_attack(spec: Mapping[str, Any] | DataAttackParams, attacker_index: int | None = None) -> DataAttack:
    """The data attack a scenario entry ``{"name": ..., **params}`` (or its validated Params) describes.

    ``attacker_index`` is this client's 0-based rank among the malicious clients (DBA uses it).
    """
    cls, params = resolve(DATA_ATTACKS, spec)
    assert isinstance(params, DataAttackParams)
    return cls.for_attacker(params, attacker_index)
