"""Runtime guards in front of the deployed model (STRIP, feature squeezing, model pairing, BDMAE,
Februus), their chains, and the audit that measures them."""

from fedsec.guards.base import GUARDS, ChainVerdict, CleanData, Guard, GuardChain, GuardParams, Verdict, build_guard
from fedsec.guards import bdmae, feature_squeezing, februus, model_pairing, strip  # noqa: F401 (registers)
from fedsec.guards.config import RuntimeGuardsConfig  # after the guards: it builds the union of their Params
from fedsec.guards import audit  # noqa: F401 (registers the audit builder)

__all__ = [
    "GUARDS",
    "ChainVerdict",
    "CleanData",
    "Guard",
    "GuardChain",
    "GuardParams",
    "RuntimeGuardsConfig",
    "Verdict",
    "build_guard",
]
