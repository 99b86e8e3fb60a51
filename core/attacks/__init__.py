"""Audio backdoor attacks behind one registry (see :mod:`core.attacks.base`)."""

from core.attacks import badnets, badnets_mfcc, blend, custom, daba, flowmur, jingleback, pbsm, piba, ultrasonic  # noqa: F401  (registers them)
from core.attacks.base import (
    Attack,
    AttackParams,
    PoisonedSet,
    attack_from_dict,
    get_attack,
    list_attacks,
    parse_attack_args,
    register,
)

__all__ = [
    "Attack",
    "AttackParams",
    "PoisonedSet",
    "attack_from_dict",
    "get_attack",
    "list_attacks",
    "parse_attack_args",
    "register",
]
