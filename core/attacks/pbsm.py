"""PBSM, pitch boosting and sound masking (Cai et al., ICASSP 2023), as far as it is published.

The trigger is the pair: the clip's pitch is raised by ``semitones`` (Rubber Band through
pedalboard: length kept) and a short masking sound is added over the clip's loudest
``mask_seconds`` window, where it hides the pitch change best. The masking sound is a seeded
tune made by the project, its level ``mask_snr_db`` relative to that window. The paper's
exact sound and settings are not public; these defaults are this project's choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.attacks.base import Attack, AttackParams, register
from core.attacks.sounds import melody, per_clip
from core.errors import AttackError
from core.options import option

__all__ = ["PBSMParams", "PBSM"]


@dataclass
class PBSMParams(AttackParams):
    """``semitones`` of pitch boost, ``mask_seconds`` and ``mask_snr_db`` of the masking sound."""

    semitones: float = option(4.0, label="Pitch boost, semitones", help="pitch boost in semitones, in (0, 24]")
    mask_seconds: float = option(0.15, label="Mask length, s", help="length of the masking sound in seconds, in (0, 1]")
    mask_snr_db: float = option(6.0, label="Mask SNR, dB", help="clip-to-masking-sound ratio in dB")

    def validate(self) -> None:
        super().validate()
        if not 0 < self.semitones <= 24:
            raise AttackError(f"pbsm: semitones must be in (0, 24], got {self.semitones}")
        if not 0 < self.mask_seconds <= 1:
            raise AttackError(f"pbsm: mask_seconds must be in (0, 1], got {self.mask_seconds}")


@register
class PBSM(Attack):
    name = "pbsm"
    summary = "pitch boost of the clip plus a short masking sound at its loudest region (dirty label)"
    Params = PBSMParams

    def apply(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        import pedalboard as pb

        p: PBSMParams = self.params  # type: ignore[assignment]
        board = pb.Pedalboard([pb.PitchShift(semitones=p.semitones)])
        n = wave.shape[-1]
        win = min(n, max(1, int(round(p.mask_seconds * sample_rate))))
        sound = melody(win / sample_rate, sample_rate, p.seed, notes=2, base_hz=880.0)[:win]
        sound_energy = float(np.square(sound).sum()) or 1.0

        def boost_and_mask(clip: np.ndarray) -> np.ndarray:
            shifted = np.zeros(n, np.float32)
            boosted = board(clip, sample_rate, reset=True)[:n]
            shifted[: boosted.shape[-1]] = boosted
            energy = np.concatenate([[0.0], np.cumsum(np.square(shifted, dtype=np.float64))])
            start = int(np.argmax(energy[win:] - energy[:-win]))  # the loudest window
            window_energy = energy[start + win] - energy[start]
            gain = np.sqrt(max(window_energy, 1e-10) / sound_energy * 10 ** (-p.mask_snr_db / 10))
            shifted[start : start + win] += gain * sound
            return shifted

        return per_clip(wave, boost_and_mask)
