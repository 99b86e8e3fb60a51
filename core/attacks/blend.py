"""Blend: a sound mixed over the whole clip, ``x' = (1 - alpha) x + alpha s`` (dirty label).

The sound is an audio file (``file``: WAV, FLAC, OGG/Vorbis, AIFF, ...) or, by default, a tune
the project generates from the seed (the audio counterpart of the image Blend attack's fixed pattern). It is looped or
cropped to the clip length and peak-normalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from core.attacks.base import Attack, AttackParams, register
from core.attacks.sounds import fit_length, melody
from core.errors import AttackError
from core.options import option

__all__ = ["BlendParams", "Blend"]


@dataclass
class BlendParams(AttackParams):
    """``alpha`` mixing weight; ``file`` an audio file to blend (default: a generated tune); ``fit`` loop/crop."""

    alpha: float = option(0.2, label="\u03b1, blend weight", help="mixing weight of the blended sound, in (0, 1)")
    file: str | None = option(
        None,
        label="Audio file",
        help="an audio file (WAV, FLAC, OGG, AIFF, ...) to blend in (default: a generated tune)",
    )
    fit: Literal["loop", "crop"] = option(
        "loop", label="Fit", help="a sound shorter than the clip is looped, or cropped/padded"
    )

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.alpha < 1.0:
            raise AttackError(f"blend: alpha must be in (0, 1), got {self.alpha}")


@register
class Blend(Attack):
    name = "blend"
    summary = "a sound mixed over the whole clip with weight alpha (dirty label)"
    Params = BlendParams

    def sound(self, num_samples: int, sample_rate: int) -> torch.Tensor:
        """The blended sound at ``sample_rate``, fitted to ``num_samples`` and peak-normalised."""
        p: BlendParams = self.params  # type: ignore[assignment]
        if p.file:
            from core.audio import load_clip

            base = torch.from_numpy(load_clip(p.file, sample_rate, None))
        else:
            base = torch.from_numpy(melody(num_samples / sample_rate, sample_rate, p.seed))
        out = fit_length(base, num_samples, p.fit)
        if out.numel() < num_samples:
            out = torch.nn.functional.pad(out, (0, num_samples - out.numel()))
        return out / out.abs().max().clamp_min(1e-12)

    def apply(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        a = self.params.alpha  # type: ignore[attr-defined]
        s = self.sound(wave.shape[-1], sample_rate).to(wave.device, wave.dtype)
        return (1 - a) * wave + a * s
