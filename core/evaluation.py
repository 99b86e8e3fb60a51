"""Measure a model on a split: clean accuracy and, with a known attack, ASR and robust accuracy.

The one evaluation behind training's validation, every defense's schedule, repair reports,
the grid and the application.
"""

from __future__ import annotations

import torch
from torch import nn

from core.attacks import Attack
from core.data.audioset import AudioSet
from core.metrics import backdoor_metrics

__all__ = ["evaluate"]


def evaluate(
    model: nn.Module,
    data: AudioSet,
    split: str,
    attack: Attack | None,
    batch_size: int = 512,
    cache: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """CA and clean loss on ``split``; with an attack also ASR, RA and backdoor loss.

    ``cache`` keeps the triggered copy of each split between calls, so an evaluation every
    epoch does not run the trigger (for some attacks a per-clip effect chain) every epoch.
    """
    idx = data.splits[split]
    waves = data.waves.index_select(0, idx)
    labels = data.labels.index_select(0, idx)
    if attack is None:
        return backdoor_metrics(model, waves, labels, batch_size=batch_size)
    if attack.domain == "features":
        return _feature_attack_metrics(model, waves, labels, attack, batch_size)
    triggered = cache.get(split) if cache is not None else None
    if triggered is None:
        triggered = attack.apply_test(waves, data.sample_rate)
        if cache is not None:
            cache[split] = triggered
    return backdoor_metrics(model, waves, labels, triggered, attack.params.target, batch_size)


def _feature_attack_metrics(
    model: nn.Module, waves: torch.Tensor, labels: torch.Tensor, attack: Attack, batch_size: int
) -> dict[str, float]:
    wrapped = nn.Sequential(model[0], _FeaturePatch(attack), model[1])
    clean = backdoor_metrics(model, waves, labels, batch_size=batch_size)
    trig = backdoor_metrics(wrapped, waves, labels, waves, attack.params.target, batch_size)
    return {**clean, **{k: trig[k] for k in ("attack_success_rate", "robust_accuracy", "backdoor_loss")}}


class _FeaturePatch(nn.Module):
    def __init__(self, attack: Attack) -> None:
        super().__init__()
        self.attack = attack

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.attack.apply_features(features)
