"""JingleBack (Koffas et al., ICASSP 2023): a guitar-effect chain over the whole clip (pedalboard).

Six styles as in the original code (the GN-FT authors default to style 5):
0 PitchShift +10 semitones; 1 Distortion 30 dB; 2 Chorus (rate 1 Hz, depth 5, centre
10 ms, mix 0.5); 3 PitchShift 10 -> Distortion 20 dB -> Chorus (centre 8 ms); 4 Chorus
(centre 15 ms) -> Distortion 20 dB -> Reverb (room 0.6); 5 Gain 12 dB -> LadderFilter
(HPF12, 1 kHz) -> Phaser. Each clip is processed on the CPU with the effect state reset,
so the output depends only on the clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.attacks.base import Attack, AttackParams, register
from core.attacks.sounds import per_clip
from core.errors import AttackError
from core.options import option

__all__ = ["JingleBackParams", "JingleBack", "style_board"]

STYLES = 6


def style_board(style: int):
    """The pedalboard chain of ``style`` (0-5)."""
    import pedalboard as pb

    chains = {
        0: lambda: [pb.PitchShift(semitones=10)],
        1: lambda: [pb.Distortion(drive_db=30)],
        2: lambda: [pb.Chorus(rate_hz=1, depth=5, centre_delay_ms=10.0, feedback=0.0, mix=0.5)],
        3: lambda: [
            pb.PitchShift(semitones=10),
            pb.Distortion(drive_db=20),
            pb.Chorus(rate_hz=1, depth=5, centre_delay_ms=8.0, feedback=0.0, mix=0.5),
        ],
        4: lambda: [pb.Chorus(centre_delay_ms=15), pb.Distortion(drive_db=20), pb.Reverb(room_size=0.6)],
        5: lambda: [pb.Gain(gain_db=12), pb.LadderFilter(mode=pb.LadderFilter.Mode.HPF12, cutoff_hz=1000), pb.Phaser()],
    }
    if style not in chains:
        raise AttackError(f"jingleback: style must be 0-{STYLES - 1}, got {style}")
    return pb.Pedalboard(chains[style]())


@dataclass
class JingleBackParams(AttackParams):
    """``style``: which of the six effect chains (default 5, as the GN-FT authors)."""

    style: int = option(5, label="Style", help="which of the six effect chains, 0-5 (5: the GN-FT authors')")

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.style < STYLES:
            raise AttackError(f"jingleback: style must be 0-{STYLES - 1}, got {self.style}")


@register
class JingleBack(Attack):
    name = "jingleback"
    summary = "a guitar-effect chain (pedalboard) over the whole clip, styles 0-5 (dirty label)"
    Params = JingleBackParams

    def apply(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        board = style_board(self.params.style)  # type: ignore[attr-defined]
        return per_clip(wave, lambda clip: board(clip, sample_rate, reset=True))
