"""Backdoor defenses that repair a copy of a model on a small clean set (see :mod:`core.defenses.base`)."""

from core.defenses.base import (
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
from core.options import OptionSpec, fields_of

DEFENSES: dict[str, type[Defense]] = {d.name: d for d in (GNFT, FineTune, FinePruning, FTSAM, CLP)}
#: What people call each defense (the application's defense list).
DEFENSE_TITLES = {"gnft": "GN-FT", "ft": "Fine-tuning (FT)", "fp": "Fine-Pruning", "ftsam": "FT-SAM", "clp": "CLP"}

#: Every defense option, first declaration wins: the tables below are read from the configs' field
#: metadata (:func:`core.options.option`), which is where a new option is described.
_SPECS: dict[str, OptionSpec] = {}
for _spec in (s for d in DEFENSES.values() for s in fields_of(d.Config)):
    _SPECS.setdefault(_spec.name, _spec)
#: One line per defense option: ``python -m core.defend --help`` and the application's tooltips.
OPTION_HELP: dict[str, str] = {name: s.help for name, s in _SPECS.items()}
#: The short human name of each option (the application's form labels; the unit after a comma).
OPTION_LABELS: dict[str, str] = {name: s.label for name, s in _SPECS.items()}
#: Options that are shares of 1 in the config and shown in percent.
PERCENT_OPTIONS = frozenset(name for name, s in _SPECS.items() if s.percent)
#: The few options that matter first (the rest sit under "Advanced" in the application).
PRIMARY_OPTIONS = tuple(name for name, s in _SPECS.items() if s.primary)
#: Config fields that are not options (set another way: common options, a watching application).
HIDDEN_OPTIONS = frozenset(name for name, s in _SPECS.items() if s.hidden)

__all__ = [
    "CLP",
    "CLPConfig",
    "DEFENSES",
    "DEFENSE_TITLES",
    "HIDDEN_OPTIONS",
    "OPTION_HELP",
    "OPTION_LABELS",
    "PERCENT_OPTIONS",
    "PRIMARY_OPTIONS",
    "FTSAM",
    "FTSAMConfig",
    "Defense",
    "DefenseConfig",
    "DefenseResult",
    "FinePruning",
    "FinePruningConfig",
    "FineTune",
    "FineTuneConfig",
    "GNFT",
    "GNFTConfig",
    "GNFTStep",
    "clean_subset",
]
