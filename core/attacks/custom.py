"""Custom: any audio file as the trigger (WAV, FLAC, OGG/Vorbis, AIFF...; the application's recorder makes WAVs).

The file is mixed to mono and resampled to the data's rate, looped or cropped to ``length``
seconds (default: its own length, cropped to the clip), and added at ``position``
(start/middle/end/seconds, or ``random``: a seeded offset per clip). Its level is either a
fixed ``gain_db`` applied to the file, or, when ``snr_db`` is set, scaled per clip to that
signal-to-trigger ratio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from core.attacks.base import Attack, AttackParams, position_offset, register
from core.attacks.sounds import fit_length, scale_to_snr
from core.errors import AttackError
from core.options import option

__all__ = ["CustomParams", "Custom"]


@dataclass
class CustomParams(AttackParams):
    """``file`` (audio, required), ``position``, ``gain_db`` or ``snr_db``, ``fit`` loop/crop, ``length`` seconds."""

    file: str = option(
        "",
        label="Audio file",
        help="the trigger: WAV, FLAC, OGG/Vorbis, AIFF or another format soundfile reads (required)",
    )
    position: str = option("start", label="Position", help="start, middle, end or seconds from the start")
    gain_db: float = option(0.0, label="Gain, dB", help="gain applied to the trigger in dB (unless snr_db is set)")
    snr_db: float | None = option(
        None, label="SNR, dB", help="scale the trigger to this clip-to-trigger ratio in dB instead of gain_db"
    )
    fit: Literal["loop", "crop"] = option(
        "crop", label="Fit", help="a trigger shorter than length is looped, or cropped/padded"
    )
    length: float | None = option(None, label="Length, s", help="trigger length in seconds (default: the file's)")

    def validate(self) -> None:
        super().validate()
        if not self.file:
            raise AttackError("custom: give the trigger audio file with file=PATH (--attack-arg file=trigger.wav)")
        if self.length is not None and self.length <= 0:
            raise AttackError(f"custom: length must be positive seconds, got {self.length}")


@register
class Custom(Attack):
    name = "custom"
    summary = "any audio file as trigger: position, gain or SNR, loop or crop (dirty label)"
    Params = CustomParams

    def __init__(self, params: CustomParams | None = None, sample_rate: int = 16000) -> None:
        super().__init__(params, sample_rate)
        self._cache: dict[int, torch.Tensor] = {}
        self.pattern(sample_rate)  # read the file now: a bad file fails when the attack is made

    def pattern(self, sample_rate: int, clip_len: int | None = None) -> torch.Tensor:
        """The trigger at ``sample_rate`` with the gain applied, fitted to ``length`` (and the clip)."""
        p: CustomParams = self.params  # type: ignore[assignment]
        if sample_rate not in self._cache:
            from core.audio import load_clip
            from core.errors import DataError

            try:
                self._cache[sample_rate] = torch.from_numpy(load_clip(p.file, sample_rate, None))
            except DataError as exc:
                raise AttackError(f"custom trigger: {exc}") from exc
        base = self._cache[sample_rate] * 10 ** (p.gain_db / 20)
        if p.length is not None:
            target = max(1, int(round(p.length * sample_rate)))
            base = fit_length(base, target, p.fit)
        if clip_len is not None:
            base = base[:clip_len]
        return base

    def apply(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        p: CustomParams = self.params  # type: ignore[assignment]
        clip_len = wave.shape[-1]
        pattern = self.pattern(sample_rate, clip_len).to(wave.device, wave.dtype)
        n = pattern.numel()
        flat = wave.reshape(-1, clip_len)
        if p.position == "random":
            gen = torch.Generator().manual_seed(p.seed)
            starts = torch.randint(0, clip_len - n + 1, (flat.shape[0],), generator=gen).tolist()
        else:
            starts = [position_offset(p.position, clip_len, n, sample_rate)] * flat.shape[0]
        if p.snr_db is not None:
            gains = scale_to_snr(flat, pattern, p.snr_db)
        else:
            gains = torch.ones(flat.shape[0], 1, device=wave.device, dtype=wave.dtype)
        out = flat.clone()
        for row, start in enumerate(starts):
            out[row, start : start + n] += gains[row, 0] * pattern
        return out.reshape(wave.shape)
