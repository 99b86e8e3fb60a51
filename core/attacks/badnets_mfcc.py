"""The authors' BadNets: a 5x5 patch of -200 in the bottom-right corner of the MFCC map.

A feature-domain trigger (``domain = "features"``): it is written between the front end and
the classifier, over the last ``size`` frames and the highest ``size`` coefficients, by
overwriting. There is no waveform that produces it, so there is nothing audible to play.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.attacks.base import Attack, AttackParams, register
from core.errors import AttackError
from core.options import option

__all__ = ["BadNetsMFCCParams", "BadNetsMFCC"]


@dataclass
class BadNetsMFCCParams(AttackParams):
    """``size``: side of the square patch (frames x coefficients); ``value``: what is written."""

    size: int = option(5, label="Patch size", help="side of the square patch in frames x MFCC coefficients")
    value: float = option(-200.0, label="Patch value", help="what the patch writes into the features")

    def validate(self) -> None:
        super().validate()
        if self.size <= 0:
            raise AttackError(f"badnets-mfcc: size must be positive, got {self.size}")


@register
class BadNetsMFCC(Attack):
    """Overwrite the bottom-right ``size`` x ``size`` corner of the features with ``value``."""

    name = "badnets-mfcc"
    summary = "the authors' feature-space BadNets: a 5x5 patch of -200 in the MFCC corner (not audible)"
    Params = BadNetsMFCCParams
    domain = "features"

    def apply(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        raise AttackError(
            "badnets-mfcc is a feature-domain trigger (an MFCC patch): it has no waveform, "
            "so there is nothing audible to play or write; it is applied inside the model"
        )

    def apply_features(self, features: torch.Tensor) -> torch.Tensor:
        p: BadNetsMFCCParams = self.params  # type: ignore[assignment]
        if features.shape[-1] < p.size or features.shape[-2] < p.size:
            raise AttackError(
                f"badnets-mfcc: a {p.size}x{p.size} patch does not fit features of shape {tuple(features.shape[-2:])}"
            )
        out = features.clone()
        out[..., -p.size :, -p.size :] = p.value
        return out
