"""Attacks malicious clients run: data poisoning, model poisoning, and when and who.

Pure torch on tensors; the federation loop decides when to call them (see
:mod:`fedsec.attacks.schedule`) and the evaluator uses the data attacks' test-time
triggers to measure the attack success rate.
"""

from fedsec.attacks.data import DATA_ATTACKS, DataAttack, DataAttackParams, PoisonedBatch, build_data_attack
from fedsec.attacks.model import MODEL_ATTACKS, ModelAttack, ModelAttackContext, ModelAttackParams, build_model_attack
from fedsec.attacks.spec import AttackParams, params_union, parse_params
from fedsec.attacks.schedule import AttackSchedule, malicious_clients

__all__ = [
    "DATA_ATTACKS",
    "MODEL_ATTACKS",
    "AttackParams",
    "AttackSchedule",
    "DataAttack",
    "DataAttackParams",
    "ModelAttack",
    "ModelAttackContext",
    "ModelAttackParams",
    "PoisonedBatch",
    "build_data_attack",
    "build_model_attack",
    "malicious_clients",
    "params_union",
    "parse_params",
]
