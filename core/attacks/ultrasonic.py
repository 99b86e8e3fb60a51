"""Ultrasonic (Koffas et al., WiseML 2022): a 21 kHz sine at -10 dB added to 44.1 kHz audio.

The original recipe is ``sox ... synth 1 sin 21k vol -10dB`` (peak 0.316): inaudible to
people, visible to a model whose front end runs at 44.1 kHz (n_fft 1103, hop 441). The
trigger lasts ``size`` percent of a second; continuous at ``position`` (start/middle/end),
or (``continuous=False``, the authors' GN-FT setting) split into 5 equal bursts starting at
0, 0.2, 0.4, 0.6 and 0.8 s, where ``position`` is ignored. Below 42 kHz a 21 kHz tone
cannot exist: the attack refuses, and ``ultrasonic-near-nyquist`` (a tone just under the
Nyquist frequency, audible to many listeners) must be asked for by name instead.

Unlike the original (hard on/off gating), each burst fades in and out over ``ramp_ms``
(2 ms raised cosine by default): hard edges splatter energy down into the audible band and
make the "inaudible" trigger click. ``ramp_ms=0`` restores the original gating.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from core.attacks.base import Attack, AttackParams, position_offset, register
from core.errors import AttackError
from core.options import option, override

__all__ = ["UltrasonicParams", "Ultrasonic", "NearNyquistParams", "UltrasonicNearNyquist"]

BURSTS = 5


@dataclass
class UltrasonicParams(AttackParams):
    """``frequency`` (Hz), ``level_db`` (peak dBFS), ``size`` (percent of 1 s), ``position``,
    ``continuous`` (False: five bursts)."""

    frequency: float = option(21000.0, label="Frequency, Hz", help="tone frequency in Hz (below the Nyquist frequency)")
    level_db: float = option(-10.0, label="Level, dBFS", help="peak level of the tone in dBFS (<= 0)")
    size: float = option(40.0, label="Length, % of 1 s", help="trigger length in percent of one second, in (0, 100]")
    position: str = option(
        "middle", label="Position", help="start, middle, end or seconds from the start (continuous only)"
    )
    continuous: bool = option(False, label="Continuous", help="one tone (true) or five bursts (false, the authors')")
    ramp_ms: float = option(2.0, label="Ramp, ms", help="raised-cosine fade in and out of each burst; 0 = hard gating")

    def validate(self) -> None:
        super().validate()
        if self.ramp_ms < 0:
            raise AttackError(f"ultrasonic: ramp_ms must be >= 0, got {self.ramp_ms}")
        if not 0 < self.size <= 100:
            raise AttackError(f"ultrasonic: size is a percentage of one second in (0, 100], got {self.size}")
        if self.level_db > 0:
            raise AttackError(f"ultrasonic: level_db must be <= 0 dBFS, got {self.level_db}")
        if self.frequency <= 0:
            raise AttackError(f"ultrasonic: frequency must be positive, got {self.frequency}")


@register
class Ultrasonic(Attack):
    name = "ultrasonic"
    summary = "21 kHz sine at -10 dB on 44.1 kHz audio, continuous or in 5 bursts (dirty label)"
    Params = UltrasonicParams
    recipe_rate = 44100

    def check_sample_rate(self, sample_rate: int) -> None:
        f = self.params.frequency  # type: ignore[attr-defined]
        if f >= sample_rate / 2:
            raise AttackError(
                f"{self.name}: a {f:g} Hz tone cannot exist at {sample_rate} Hz (Nyquist {sample_rate / 2:g} Hz); "
                "run the data and model at 44100 Hz (--sample-rate 44100 --n-fft 1103 --hop-length 441), "
                "or ask for the audible substitute by name: --attack ultrasonic-near-nyquist"
            )

    def segments(self, num_samples: int, sample_rate: int) -> list[tuple[int, int]]:
        """``(start, end)`` sample ranges where the tone sounds."""
        p: UltrasonicParams = self.params  # type: ignore[assignment]
        length = min(num_samples, int(math.floor(sample_rate / 100) * p.size))
        if p.continuous:
            start = position_offset(p.position, num_samples, length, sample_rate)
            return [(start, start + length)]
        burst = length // BURSTS
        starts = [int(round(k * 0.2 * sample_rate)) for k in range(BURSTS)]
        return [(s, min(s + burst, num_samples)) for s in starts if s < num_samples]

    def mask(self, num_samples: int, sample_rate: int) -> torch.Tensor:
        """The tone's envelope ``float [num_samples]``: 1 inside a burst, raised-cosine ramps at its edges."""
        p: UltrasonicParams = self.params  # type: ignore[assignment]
        mask = torch.zeros(num_samples, dtype=torch.float64)
        for start, end in self.segments(num_samples, sample_rate):
            mask[start:end] = 1.0
            ramp = min(int(round(p.ramp_ms * sample_rate / 1000)), (end - start) // 2)
            if ramp > 0:
                rise = 0.5 - 0.5 * torch.cos(torch.pi * (torch.arange(ramp, dtype=torch.float64) + 0.5) / ramp)
                mask[start : start + ramp] = rise
                mask[end - ramp : end] = rise.flip(0)
        return mask

    def pattern(self, num_samples: int, sample_rate: int) -> torch.Tensor:
        """The trigger waveform for a clip of ``num_samples``."""
        p: UltrasonicParams = self.params  # type: ignore[assignment]
        self.check_sample_rate(sample_rate)
        t = torch.arange(num_samples, dtype=torch.float64) / sample_rate
        tone = (10 ** (p.level_db / 20)) * torch.sin(2 * math.pi * p.frequency * t)
        return (tone * self.mask(num_samples, sample_rate)).float()

    def apply(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        return wave + self.pattern(wave.shape[-1], sample_rate).to(wave.device, wave.dtype)


@dataclass
class NearNyquistParams(UltrasonicParams):
    """As ``ultrasonic`` but ``frequency`` defaults to 7800 Hz, under 16 kHz's Nyquist (audible)."""

    frequency: float = override(UltrasonicParams, "frequency", 7800.0)


@register
class UltrasonicNearNyquist(Ultrasonic):
    name = "ultrasonic-near-nyquist"
    summary = "Ultrasonic's recipe with a tone just under Nyquist (7.8 kHz at 16 kHz): a documented, audible substitute"
    Params = NearNyquistParams
    recipe_rate = None  # a substitute for running at the data's own rate
