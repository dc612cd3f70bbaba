"""Privacy attacks on the federation (gradient inversion, membership inference), the audit that
runs them on what the server holds, and the clients' DP-SGD against them."""

from fedsec.privacy.base import (
    PRIVACY_ATTACKS,
    AttackerData,
    AttackParams,
    GradientInversion,
    LocalTraining,
    MembershipInference,
    ObservedUpdate,
    Reconstruction,
    build_attack,
)
from fedsec.privacy import dlg, inverting_gradients, label_only, lira, loss_threshold, shadow  # noqa: F401 (registers)
from fedsec.privacy.config import PrivacyConfig  # after the attacks: it builds the union of their Params
from fedsec.privacy import audit  # noqa: F401 (registers the audit builder)

__all__ = [
    "PRIVACY_ATTACKS",
    "AttackParams",
    "AttackerData",
    "GradientInversion",
    "LocalTraining",
    "MembershipInference",
    "ObservedUpdate",
    "PrivacyConfig",
    "Reconstruction",
    "build_attack",
]
