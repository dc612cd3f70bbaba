"""Model poisoning attacks, registered by scenario name in :data:`MODEL_ATTACKS`."""

from fedsec.attacks.model.base import (
    MODEL_ATTACKS,
    ModelAttack,
    ModelAttackContext,
    ModelAttackParams,
    build_model_attack,
)
from fedsec.attacks.model import (  # noqa: F401 (registration)
    alie,
    constrain_scale,
    gaussian,
    ipm,
    min_max,
    min_sum,
    neurotoxin,
    scaling,
    sign_flip,
)

__all__ = ["MODEL_ATTACKS", "ModelAttack", "ModelAttackContext", "ModelAttackParams", "build_model_attack"]
