"""Data poisoning attacks, registered by scenario name in :data:`DATA_ATTACKS`."""

from fedsec.attacks.data.base import (
    DATA_ATTACKS,
    DataAttack,
    DataAttackParams,
    PoisonedBatch,
    TargetMode,
    build_data_attack,
)
from fedsec.attacks.data import badnets, blended, dba, label_flip, sig, wanet  # noqa: F401 (registration)

__all__ = ["DATA_ATTACKS", "DataAttack", "DataAttackParams", "PoisonedBatch", "TargetMode", "build_data_attack"]
