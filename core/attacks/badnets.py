"""Audio BadNets: a fixed short tone or noise burst added to the waveform, dirty label.

There is no canonical audio BadNets; this is the waveform recipe of ART's tone trigger
(a short sine added at a fixed offset) generalised to a tone or a seeded noise burst at a
configurable position and level. Defaults: 1 kHz tone, 100 ms, at the start, peak −20 dBFS
(amplitude 0.1), 10 % of the training set relabelled to class 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from core.attacks.base import Attack, AttackParams, position_offset, register
from core.errors import AttackError
from core.options import option

__all__ = ["BadNetsParams", "BadNets"]


@dataclass
class BadNetsParams(AttackParams):
    """Trigger settings: ``kind`` tone or noise, ``frequency`` (Hz, tone), ``duration`` (s),
    ``position`` start/middle/end or seconds, ``level_db`` peak level in dBFS."""

    kind: Literal["tone", "noise"] = option("tone", label="Kind", help="trigger sound: a sine tone or white noise")
    frequency: float = option(1000.0, label="Frequency, Hz", help="tone frequency in Hz (kind=tone)")
    duration: float = option(0.1, label="Duration, s", help="trigger length in seconds, in (0, 10]")
    position: str = option("start", label="Position", help="start, middle, end or seconds from the start")
    level_db: float = option(-20.0, label="Level, dBFS", help="peak level of the trigger in dBFS (<= 0)")

    def validate(self) -> None:
        super().validate()
        if self.kind not in ("tone", "noise"):
            raise AttackError(f"badnets: kind must be tone or noise, got {self.kind!r}")
        if not 0.0 < self.duration <= 10.0:
            raise AttackError(f"badnets: duration must be in (0, 10] s, got {self.duration}")
        if self.level_db > 0:
            raise AttackError(f"badnets: level_db is a peak level in dBFS and must be <= 0, got {self.level_db}")
        if self.frequency <= 0:
            raise AttackError(f"badnets: frequency must be positive, got {self.frequency}")


@register
class BadNets(Attack):
    """A short tone or noise burst added to the waveform at a fixed place."""

    name = "badnets"
    summary = "fixed short tone or noise burst added to the waveform (dirty label)"
    Params = BadNetsParams

    def check_sample_rate(self, sample_rate: int) -> None:
        p: BadNetsParams = self.params  # type: ignore[assignment]
        if p.kind == "tone" and p.frequency >= sample_rate / 2:
            raise AttackError(
                f"badnets: a {p.frequency:g} Hz tone cannot exist at {sample_rate} Hz (Nyquist {sample_rate / 2:g} Hz)"
            )

    def pattern(self, sample_rate: int) -> torch.Tensor:
        """The trigger waveform itself, ``[duration * sample_rate]`` samples, peak at ``level_db``."""
        p: BadNetsParams = self.params  # type: ignore[assignment]
        self.check_sample_rate(sample_rate)
        n = max(1, int(round(p.duration * sample_rate)))
        amplitude = 10.0 ** (p.level_db / 20.0)
        if p.kind == "tone":
            t = torch.arange(n, dtype=torch.float64) / sample_rate
            wave = torch.sin(2 * math.pi * p.frequency * t)
        else:
            gen = torch.Generator().manual_seed(p.seed)
            wave = torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1
        wave = wave / wave.abs().max().clamp_min(1e-12)
        return (amplitude * wave).float()

    def apply(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        p: BadNetsParams = self.params  # type: ignore[assignment]
        pattern = self.pattern(sample_rate).to(wave.device, wave.dtype)
        start = position_offset(p.position, wave.shape[-1], pattern.numel(), sample_rate)
        out = wave.clone()
        out[..., start : start + pattern.numel()] += pattern
        return out
