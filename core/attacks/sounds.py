"""Trigger sounds the project makes itself (no downloaded assets), and mixing helpers."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["melody", "fit_length", "scale_to_snr", "per_clip"]

PENTATONIC = (0, 2, 4, 7, 9)


def melody(seconds: float, sample_rate: int, seed: int, notes: int = 4, base_hz: float = 440.0) -> np.ndarray:
    """A short seeded tune: pentatonic notes with three harmonics and attack/decay envelopes, peak 1."""
    rng = np.random.default_rng(seed)
    n = max(1, int(round(seconds * sample_rate)))
    out = np.zeros(n, np.float64)
    per_note = n // notes
    t = np.arange(per_note) / sample_rate
    attack = max(1, int(0.01 * sample_rate))
    env = np.minimum(1.0, np.arange(per_note) / attack) * np.exp(-3.0 * t / max(seconds / notes, 1e-3))
    for k in range(notes):
        step = PENTATONIC[rng.integers(len(PENTATONIC))] + 12 * int(rng.integers(0, 2))
        f0 = base_hz * 2 ** (step / 12)
        tone = sum(
            (0.6**h) * np.sin(2 * math.pi * f0 * (h + 1) * t + rng.uniform(0, 2 * math.pi))
            for h in range(3)
            if f0 * (h + 1) < sample_rate / 2
        )
        out[k * per_note : (k + 1) * per_note] = tone * env
    peak = np.abs(out).max()
    return (out / peak if peak > 0 else out).astype(np.float32)


def fit_length(pattern: torch.Tensor, length: int, mode: str) -> torch.Tensor:
    """``loop`` the pattern (repeat then cut) or ``crop`` it to at most ``length`` samples."""
    if mode == "loop" and pattern.numel() < length:
        reps = -(-length // pattern.numel())
        return pattern.repeat(reps)[:length]
    return pattern[:length]


def scale_to_snr(wave: torch.Tensor, pattern: torch.Tensor, snr_db: float) -> torch.Tensor:
    """Per-clip gains ``[B, 1]`` so that energy(wave) / energy(gain * pattern) = ``snr_db``."""
    clip_energy = wave.pow(2).sum(dim=-1, keepdim=True)
    trig_energy = pattern.pow(2).sum().clamp_min(1e-12)
    return torch.sqrt(clip_energy / trig_energy * 10 ** (-snr_db / 10))


def per_clip(wave: torch.Tensor, process: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    """Run a NumPy effect on every clip of ``wave [..., T]`` (on the CPU), keeping length, device and dtype.

    An effect that lengthens or shortens a clip (pitch shifters, reverbs) is cropped or
    zero-padded back to ``T`` samples.
    """
    x = wave.detach().to("cpu", torch.float32).numpy().reshape(-1, wave.shape[-1])
    n = x.shape[-1]
    out = np.empty_like(x)
    for i, row in enumerate(x):
        y = np.asarray(process(np.ascontiguousarray(row)), dtype=np.float32).reshape(-1)[:n]
        out[i, : y.shape[0]] = y
        out[i, y.shape[0] :] = 0.0
    return torch.from_numpy(out.reshape(wave.shape)).to(wave.device, wave.dtype)
