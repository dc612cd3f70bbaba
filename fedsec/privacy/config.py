"""The scenario's ``privacy`` section (pydantic).

Defined here rather than in :mod:`fedsec.scenario` (which imports it) so the attack registry
stays the single list of attacks; the package's ``__init__`` registers every attack before it
imports this module.
"""

from __future__ import annotations

from typing import Annotated, Any, Self, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedsec.privacy.base import PRIVACY_ATTACKS
from fedsec.privacy.dp_sgd import DPSGDConfig
from fedsec.privacy.loss_threshold import LossThreshold

MAX_IMAGES = 64
"""Most images one inversion reconstructs (the client's batch; each is an optimised variable)."""


def _spec(kind: str) -> Any:
    attacks = (PRIVACY_ATTACKS.get(name) for name in PRIVACY_ATTACKS.names())
    params = tuple(attack.Params for attack in attacks if attack.kind == kind)
    return Annotated[Union[params], Field(discriminator="name")]  # noqa: UP007 (runtime tuple)


InversionSpec = _spec("inversion")
MembershipSpec = _spec("membership")


class PrivacySection(BaseModel):
    """Same rules as every scenario section: unknown keys are errors, values are checked and frozen."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)


def _rounds_field(default_meaning: str) -> Any:
    return Field(None, min_length=1, max_length=10_000,
                 description=f"Rounds (1-based) after which the attack runs; none: {default_meaning}.")


class InversionConfig(PrivacySection):
    """Gradient inversion by the server of one client's update.

    The attacker gets the update the server received, the global model the client trained from
    and the round's public training configuration (``client``: lr, momentum, weight decay, local
    epochs, batch size) and the example count the client's reply reports. The client's partition
    is read by the evaluator only, to score the reconstruction.
    """

    client: int = Field(0, ge=0, description="Partition id of the client whose update is inverted.")
    rounds: list[Annotated[int, Field(ge=1)]] | None = _rounds_field(
        "every round in which the server received the client's update")
    max_images: int = Field(
        16, ge=1, le=MAX_IMAGES, description=f"Most images reconstructed (at most {MAX_IMAGES}): a client "
        "that trained on more examples is recorded as skipped.")
    attacks: list[InversionSpec] = Field(  # type: ignore[valid-type]
        min_length=1, max_length=8, description="Inversion attacks run on the update, each with its parameters.")


class MembershipConfig(PrivacySection):
    """Membership inference on the global model: examples of the clients it trained on against
    test examples, and the clients it trained on against the others."""

    rounds: list[Annotated[int, Field(ge=1)]] | None = _rounds_field("the last round")
    samples: int = Field(
        2000, ge=1, le=10_000, description="Examples drawn from the clients' partitions (an equal share of each "
        "client's; those of clients sampled so far are the members), and as many non-members from the test split "
        "(TPR at 0.1% FPR needs at least 1,000); the test split's other examples are the attacker's own.")
    attacks: list[MembershipSpec] = Field(  # type: ignore[valid-type]
        default_factory=lambda: [LossThreshold.Params()], min_length=1, max_length=8,
        description="Membership attacks run on the global model, each with its parameters (loss-threshold, "
        "shadow, lira, label-only).")


class PrivacyConfig(PrivacySection):
    """Privacy attacks by the server on what it holds, and the clients' DP-SGD against them;
    records go to ``privacy.jsonl``."""

    inversion: InversionConfig | None = Field(None, description="Gradient inversion of one client's updates.")
    membership: MembershipConfig | None = Field(None, description="Membership inference on the global model.")
    dp_sgd: DPSGDConfig | None = Field(
        None, description="DP-SGD in every honest client's local training, with its (ε, δ) per round "
        "(none: plain training).")

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.inversion is None and self.membership is None and self.dp_sgd is None:
            raise ValueError("give inversion, membership, dp_sgd or several")
        return self

    def problems(self, rounds: int, num_clients: int, optimizer: str) -> list[str]:
        """Why the section does not fit the rest of the scenario (one line each)."""
        found = []
        for key, part in (("inversion", self.inversion), ("membership", self.membership)):
            late = [r for r in (part.rounds or []) if r > rounds] if part is not None else []
            if late:
                found.append(f"privacy.{key}.rounds: {late} are after the last round ({rounds})")
        if self.inversion is not None:
            if self.inversion.client >= num_clients:
                found.append(
                    f"privacy.inversion.client: {self.inversion.client} is not a client id 0..{num_clients - 1}")
            if optimizer != "sgd":
                found.append(f"privacy.inversion: the attacker replays SGD, the clients train with {optimizer}")
        return found
