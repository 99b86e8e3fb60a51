"""Backdoor defenses that repair a copy of a model on a small clean set (see :mod:`core.defenses.base`)."""

from core.defenses.base import (
    OPTION_HELP,
    OPTION_LABELS,
    PERCENT_OPTIONS,
    PRIMARY_OPTIONS,
    Defense,
    DefenseConfig,
    DefenseResult,
    clean_subset,
)
from core.defenses.clp import CLP, CLPConfig
from core.defenses.fine_pruning import FinePruning, FinePruningConfig
from core.defenses.finetune import FineTune, FineTuneConfig
from core.defenses.ft_sam import FTSAM, FTSAMConfig
from core.defenses.gnft import GNFT, GNFTConfig, GNFTStep

DEFENSES: dict[str, type[Defense]] = {d.name: d for d in (GNFT, FineTune, FinePruning, FTSAM, CLP)}
#: What people call each defense (the application's defense list).
DEFENSE_TITLES = {"gnft": "GN-FT", "ft": "Fine-tuning (FT)", "fp": "Fine-Pruning", "ftsam": "FT-SAM", "clp": "CLP"}

__all__ = ["CLP", "CLPConfig", "DEFENSES", "DEFENSE_TITLES", "OPTION_HELP", "OPTION_LABELS", "PERCENT_OPTIONS",
           "PRIMARY_OPTIONS", "FTSAM", "FTSAMConfig", "Defense", "DefenseConfig", "DefenseResult", "FinePruning",
           "FinePruningConfig", "FineTune", "FineTuneConfig", "GNFT", "GNFTConfig", "GNFTStep", "clean_subset"]
