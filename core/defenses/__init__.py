"""Backdoor defenses that repair a copy of a model on a small clean set (see :mod:`core.defenses.base`)."""

from core.defenses.base import Defense, DefenseConfig, DefenseResult, clean_subset
from core.defenses.fine_pruning import FinePruning, FinePruningConfig
from core.defenses.finetune import FineTune, FineTuneConfig
from core.defenses.gnft import GNFT, GNFTConfig, GNFTStep

DEFENSES: dict[str, type[Defense]] = {d.name: d for d in (GNFT, FineTune, FinePruning)}

__all__ = ["DEFENSES", "Defense", "DefenseConfig", "DefenseResult", "FinePruning", "FinePruningConfig", "FineTune",
           "FineTuneConfig", "GNFT",
           "GNFTConfig", "GNFTStep", "clean_subset"]
