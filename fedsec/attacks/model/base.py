"""Model poisoning: the interface every update-rewriting method implements, and its registry.

An update is a flat float vector ``Δ = w_client − w_global`` of length d. Attacks are
vectorised torch on whatever device the update lives on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from fedsec.attacks.spec import AttackParams, resolve
from fedsec.registry import Registry


@dataclass(frozen=True, kw_only=True)
class ModelAttackContext:
    """What a malicious client knows when it rewrites its update.

    Attributes
    ----------
    global_vector : Tensor (d,)
        The flattened global model the round started from.
    benign_updates : Tensor (k, d) or None
        Benign updates the attackers can see: the colluding attackers' own benign
        updates (normally including this client's), or statistics granted by collusion.
        None: attacks that need statistics use the client's single own update.
    num_clients : int
        n, clients in the federation (``data.num_clients``).
    num_malicious : int
        m, malicious clients in the federation.
    num_clients_per_round : int
        Clients sampled this round (attackers included).
    round_examples : int
        Examples held by the clients sampled this round: the sum of the weights example-weighted
        FedAvg gives them when all of them reply.
    own_examples : int
        This attacker's examples, the weight of its update.
    server_lr : float
        η, the server learning rate applied to the aggregated update.
    generator : torch.Generator
        Source of every random draw, for reproducible runs.
    """

    global_vector: Tensor
    benign_updates: Tensor | None = None
    num_clients: int
    num_malicious: int
    num_clients_per_round: int
    round_examples: int
    own_examples: int
    server_lr: float = 1.0
    generator: torch.Generator

    def __post_init__(self) -> None:
        d = self.global_vector.shape
        if self.global_vector.dim() != 1:
            raise ValueError(f"global_vector must be 1-D, got shape {tuple(d)}")
        if self.benign_updates is not None and (self.benign_updates.dim() != 2 or self.benign_updates.shape[1:] != d):
            raise ValueError(f"benign_updates must be (k, {d[0]}), got {tuple(self.benign_updates.shape)}")
        if not 0 <= self.num_malicious <= self.num_clients:
            raise ValueError(f"{self.num_malicious} attackers among {self.num_clients} clients")
        if not 1 <= self.num_clients_per_round <= self.num_clients:
            raise ValueError(f"{self.num_clients_per_round} clients per round among {self.num_clients}")
        if not 0 < self.own_examples <= self.round_examples:
            raise ValueError(f"{self.own_examples} own examples among {self.round_examples} in the round")
        if self.server_lr <= 0:
            raise ValueError(f"server_lr must be positive, got {self.server_lr}")

    def benign_reference(self, update: Tensor) -> Tensor:
        """The benign updates the attack may use, ``(k, d)``: ``benign_updates``, else ``update`` alone."""
        return update.unsqueeze(0) if self.benign_updates is None else self.benign_updates.to(update)


class ModelAttackParams(AttackParams):
    """Base of every model attack's parameters."""


class ModelAttack(ABC):
    """Turns a client's benign update into a malicious one.

    An attack that also changes the attacker's local training overrides :meth:`gradient_mask`
    or :meth:`training_penalty`; one built on other clients' benign updates overrides
    :meth:`uses_benign_updates`.
    """

    Params: ClassVar[type[ModelAttackParams]]

    def __init__(self, params: ModelAttackParams) -> None:
        self.params = params

    def uses_benign_updates(self) -> bool:
        """Whether the attack is computed from the benign updates of other clients
        (``attack.collusion``); with the client's own update alone such an attack degenerates.
        False by default."""
        return False

    def gradient_mask(self, benign_reference: Tensor) -> Tensor | None:
        """Bool ``(d,)`` mask, over the model's float state, of the coordinates local training may
        change (the others' gradients are zeroed), built from the mean benign update the attacker
        knows; None (the default) leaves every gradient as it is."""
        return None

    def training_penalty(self, global_parameters: Tensor) -> Callable[[Tensor], Tensor] | None:
        """A term added to the local training loss: a scalar function of the flattened model
        parameters, given the global model's (``(p,)``, in ``parameters()`` order); None (the
        default) adds nothing."""
        return None

    @abstractmethod
    def __call__(self, update: Tensor, ctx: ModelAttackContext) -> Tensor:
        """The malicious update, ``(d,)`` like ``update`` (dtype and device); ``update`` is not modified."""


MODEL_ATTACKS: Registry[type[ModelAttack]] = Registry("model attack")


def build_model_attack(spec: Mapping[str, Any] | ModelAttackParams) -> ModelAttack:
    """The model attack a scenario entry ``{"name": ..., **params}`` (or its validated Params) describes."""
    cls, params = resolve(MODEL_ATTACKS, spec)
    assert isinstance(params, ModelAttackParams)
    return cls(params)
