"""Measure a model on a split: clean accuracy and, with a known attack, ASR and robust accuracy.

The one evaluation behind training's validation, every defense's schedule, repair reports,
the grid and the application.
"""

from __future__ import annotations

import json

import torch
from torch import nn

from core.attacks import Attack
from core.data.audioset import AudioSet
from core.features import clip_features
from core.metrics import backdoor_metrics
from core.models import split_front_end

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

    ``cache`` keeps, between calls, the triggered copy of each split (an evaluation every epoch
    does not run the trigger, for some attacks a per-clip effect chain, every epoch) and, for a
    model whose front end has nothing to train, the features of the clean and triggered clips
    (keyed by the front end's settings): then only the classifier runs. The figures are the same
    bits as without a cache.
    """
    idx = data.splits[split]
    waves = data.waves.index_select(0, idx)
    labels = data.labels.index_select(0, idx)
    if attack is not None and attack.domain == "features":
        return _feature_attack_metrics(model, waves, labels, attack, batch_size)
    triggered = None
    if attack is not None:
        triggered = cache.get(split) if cache is not None else None
        if triggered is None:
            triggered = attack.apply_test(waves, data.sample_rate)
            if cache is not None:
                cache[split] = triggered
    front, classifier = split_front_end(model)
    if cache is not None and front is not None:
        key = f"{split}|features|{json.dumps(front.config.to_dict(), sort_keys=True)}"

        def features(name: str, clips: torch.Tensor) -> torch.Tensor:
            if key + name not in cache:
                cache[key + name] = clip_features(front, clips, batch_size)
            return cache[key + name]

        model, waves = classifier, features("|clean", waves)
        triggered = None if triggered is None else features("|triggered", triggered)
    if attack is None:
        return backdoor_metrics(model, waves, labels, batch_size=batch_size)
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
