"""Data poisoning attacks, registered by scenario name in :data:`DATA_ATTACKS`."""

from fedsec.attacks.data.base import (
    DATA_ATTACKS,
    DataAttack,
    DataAttackParams,
    PoisonedBatch,
    TargetMode,
    build_data_attack,
)
from fedsec.attacks.data import (  # noqa: F401 (registration)
    badnets,
    blended,
    bullseye_polytope,
    convex_polytope,
    dba,
    hidden_trigger,
    label_flip,
    poison_frogs,
    sig,
    wanet,
)

__all__ = ["DATA_ATTACKS", "DataAttack", "DataAttackParams", "PoisonedBatch", "TargetMode", "build_data_attack"]
