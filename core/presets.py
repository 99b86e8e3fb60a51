"""Defense presets: a named defense with its settings, chosen from measured results.

A preset is what a user picks first ("Recommended", "Paper (authors' loop)"); the command line
(``python -m core.defend --preset``) and the application's Defense dock read the same table, and
every report and checkpoint history records which preset a run used (or that it was custom).

"recommended" scans the model for its trigger first (``core.scan``: trigger inversion, no attack record
needed), then runs GN-FT at a 10 % clean share, r 0.1, SGD lr 0.003, 120 epochs, with 30 % of each batch
carrying the reconstructed trigger under the clips' true labels (``unlearn`` 0.3) and another 30 % pushed at
the last hidden layer toward the scan's suspected class and trained back to their labels (``unlearn_latent``
0.3, the push's radius set per model so that it sends 20 % of the clean clips there: ``latent_reach`` 0.2).
When the scan flags no class (its reconstruction is a guess), it first prunes the output layer's inputs that
the reconstructed trigger raises most, within 5 points of clean accuracy (``trigger_prune`` 0.05,
``trigger_prune_when`` "unflagged"; round 16 of ``grid_asc10_validation.notes.md``: on six per-clip
ASC-10 SmallCNNs the mean ASR fell from 25.3 to 17.1 % at the same worst CA drop, 3.1 points; where the scan
flagged, pruning had only cost accuracy, so there it is skipped); a pruning that wins back less than a quarter
of the accuracy the trigger costs is undone (``trigger_prune_gain``, the config's default 0.25; round 17: on the
ResNets it zeroed half the output layer and left the trigger as it was). After the repair it scans the repaired
model and repairs once more when that scan flags a class the repair did not unlearn (``rescan_passes`` 1; round
18: of 14 repairs of nine ASC-10 models, one, DABA at seed 22, whose first scan had pointed at a wrong class, was
flagged at its true target; the second pass took its validation ASR from 70.7 to 8.5 %, 1.8 points of CA under
the backdoored model, and every other repair is unchanged, a scan longer). Every 10 epochs the push's radius is set
again on the model being repaired, to reach 20 % of the clean clips as at the start, within twice the first
radius, where the pushed layer is fully connected (``latent_recalibrate`` 10, ``latent_growth`` 2,
``latent_recalibrate_on`` "linear"; round 21: the model soon resists the first radius and the backdoor comes
back; on the seven ASC-10 SmallCNNs whose scan points at the target, pushed at a linear layer, the mean validation
ASR fell from 9.8 to 4.4 % and the worst CA drop from 3.2 to 2.7 points, a clean SmallCNN ended 0.7 points lower;
on the ResNet, pushed at its last convolution, any growth cost 9-10 points, so there it keeps the first radius and
repairs as before). The rest was chosen on the validation split
of the real-speech benchmark (Arabic Speech Commands, ASC-10;
``benchmarks/results/grid_asc10_validation*``, the trade-off over every setting tried in
``tradeoff_asc10_validation.*``) as the lowest mean ASR with the smallest worst CA drop over ResNet and
SmallCNN x BadNets, Blend, JingleBack: mean ASR 19.6 %, worst drop 2.5 points, against the previous
Recommended's (pruning + GN-FT at lr 0.01 for 60 epochs, unlearning the scanned trigger only) 44.5 % and
3.0. The same push at lr 0.01 removes more (mean ASR 3.1 %) but costs up to 12 points of CA on the ResNet;
nothing tried meets both (mean ASR <= 5 %, every drop <= 2 points). Earlier Recommendeds: pruning + GN-FT
(SmallCNN kept 40-70 % of its backdoor), GN-FT alone, chosen on the synthetic corpus (34 % on the ResNet,
84 % on the SmallCNN).
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
            {
                "clean_ratio": 0.1,
                "r": 0.1,
                "lr": 0.003,
                "epochs": 120,
                "unlearn": 0.3,
                "unlearn_latent": 0.3,
                "latent_reach": 0.2,
                "trigger_prune": 0.05,
                "trigger_prune_when": "unflagged",
                "rescan_passes": 1,
                "latent_recalibrate": 10,
                "latent_growth": 2.0,
                "latent_recalibrate_on": "linear",
            },
            "Scan, then GN-FT unlearning the scanned trigger and a latent push toward the suspected class (10 % "
            "clean, r 0.1, lr 0.003, 120 epochs, each in 30 % of each batch), pruning what the trigger raises "
            "first when the scan flags nothing, the push set again every 10 epochs where its layer is linear, and "
            "once more when a scan of the repaired model flags a class it did not unlearn: the setting that removed "
            "the most backdoor at the smallest accuracy cost on real speech (validation)",
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
