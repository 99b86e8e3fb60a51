"""Defense presets: a named defense with its settings, chosen from measured results.

A preset is what a user picks first ("Recommended", "Paper (authors' loop)"); the command line
(``python -m core.defend --preset``) and the application's Defense dock read the same table, and
every report and checkpoint history records which preset a run used (or that it was custom).

"recommended" scans the model for its trigger first (``core.scan``: trigger inversion, no attack record
needed), then runs Fine-Pruning's pruning of the output layer (within 10 % of clean accuracy on the clean
share) and GN-FT at a 10 % clean share, r 0.1, lr 0.01, 60 epochs, with 30 % of each batch carrying the
reconstructed trigger under the clips' true labels (``unlearn`` 0.3). It was chosen on the validation
split of the real-speech benchmark (Arabic Speech Commands, ASC-10, BadNets; ``benchmarks/results/
grid_asc10_validation*``) among a dozen settings (plain GN-FT, FT, Fine-Pruning, frozen BatchNorm, a
larger r or lr, a re-initialised output layer, pruning, unlearning 30 or 50 % ...): the lowest mean ASR
with clean accuracy kept within about 2 points. Without the unlearning (the previous Recommended) SmallCNN
kept 40-70 % of its backdoor; with it, 3.5-8.7 % (validation), and the demo model's 99.1 % becomes
3.4 / 2.6 % (seeds 0 / 1). The first Recommended (GN-FT without pruning, chosen on the synthetic corpus)
left 34 % (ResNet) and 84 % (SmallCNN).
"paper" is the authors' loop: the GN-FT config's defaults (5 %, r 0.05, alpha 0.7, lr 0.001, 300 epochs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.defenses import DEFENSES, DefenseConfig
from core.errors import ConfigError

__all__ = ["DEFAULT_PRESET", "PRESETS", "Preset", "matching_preset", "preset_record"]

#: Config fields that say where and how a run happens, not what it computes: never part of a preset.
RUN_FIELDS = frozenset({"seed", "device", "grad_norm_every", "amp", "compile", "memory_format"})


@dataclass(frozen=True)
class Preset:
    """A defense and the settings that differ from its config's defaults."""

    name: str
    title: str
    defense: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""

    def config(self, **overrides: Any) -> DefenseConfig:
        """The preset's config, with ``overrides`` (explicit user choices) on top; validated."""
        config = DEFENSES[self.defense].Config(**{**self.settings, **overrides})
        config.validate()
        return config


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "recommended",
            "Recommended",
            "gnft",
            {"clean_ratio": 0.1, "r": 0.1, "lr": 0.01, "epochs": 60, "prune": 0.1, "unlearn": 0.3},
            "Scan, prune, then GN-FT unlearning the scanned trigger (10 % clean, r 0.1, lr 0.01, 60 epochs, the "
            "trigger in 30 % of each batch): the setting that removed the most backdoor within about 2 points of "
            "clean accuracy on real speech (validation)",
        ),
        Preset(
            "paper",
            "Paper (authors' loop)",
            "gnft",
            {},
            "GN-FT as in the paper: 5 % clean share, alpha 0.7, r 0.05, SGD lr 0.001, 300 epochs",
        ),
    )
}
DEFAULT_PRESET = "recommended"


def _comparable(config: DefenseConfig) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in RUN_FIELDS}


def matching_preset(defense: str, config: DefenseConfig) -> str | None:
    """The name of the preset that ``config`` equals (run fields aside), or None for a custom setting."""
    for preset in PRESETS.values():
        if preset.defense == defense and _comparable(preset.config()) == _comparable(config):
            return preset.name
    return None


def preset_record(defense: str, config: DefenseConfig, base: str | None = None) -> dict[str, Any]:
    """What a report and a checkpoint history keep: the matching preset's name, or "custom" with the
    preset it started from (``base``) and the settings that differ from it."""
    name = matching_preset(defense, config)
    if name is not None:
        return {"name": name}
    record: dict[str, Any] = {"name": "custom"}
    if base is not None:
        if base not in PRESETS:
            raise ConfigError(f"unknown preset {base!r}; one of: {', '.join(PRESETS)}")
        if PRESETS[base].defense == defense:
            reference = _comparable(PRESETS[base].config())
            record["from"] = base
            record["changed"] = {k: v for k, v in _comparable(config).items() if reference.get(k) != v}
    return record
