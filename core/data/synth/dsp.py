"""Signal processing for synthetic clips: silence trimming, coloured noise and a microphone band limit.

All functions take and return 1-D numpy waves of shape (samples,); none touches espeak-ng.
"""

from __future__ import annotations

import numpy as np

from core.errors import ConfigError

__all__ = ["NOISE_COLOURS", "trim_silence", "coloured_noise", "band_limit"]

NOISE_COLOURS = ("white", "pink", "brown")


def trim_silence(
    wave: np.ndarray, sample_rate: int, threshold: float = 0.002, pad_seconds: float = 0.005
) -> np.ndarray:
    """Cut leading/trailing samples below ``threshold`` x peak, keeping a few ms: the word itself."""
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak == 0.0:
        return wave[:0]
    loud = np.flatnonzero(np.abs(wave) > threshold * peak)
    pad = int(round(pad_seconds * sample_rate))
    return wave[max(0, loud[0] - pad) : min(wave.size, loud[-1] + 1 + pad)]


def coloured_noise(num_samples: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of shape (num_samples,) with a 1/f^alpha power spectrum (white 0, pink 1, brown 2), unit RMS."""
    alpha = {"white": 0.0, "pink": 1.0, "brown": 2.0}.get(colour)
    if alpha is None:
        raise ConfigError(f"unknown noise colour {colour!r}; use one of {', '.join(NOISE_COLOURS)}")
    white = rng.standard_normal(num_samples)
    if alpha == 0.0:
        noise = white
    else:
        spectrum = np.fft.rfft(white)
        freqs = np.arange(spectrum.size, dtype=np.float64)
        freqs[0] = 1.0
        spectrum *= freqs ** (-alpha / 2.0)
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, n=num_samples)
    rms = float(np.sqrt(np.mean(noise**2)))
    return (noise / rms) if rms > 0 else noise


def band_limit(wave: np.ndarray, sample_rate: int, lowpass_hz: int | None, highpass_hz: int | None) -> np.ndarray:
    """Zero-phase Butterworth-shaped band limit (low-pass order 4, high-pass order 2) by FFT; same shape out."""
    nyquist = sample_rate / 2
    if lowpass_hz is not None and lowpass_hz >= nyquist * 0.95:
        lowpass_hz = None
    if lowpass_hz is None and highpass_hz is None:
        return wave
    spectrum = np.fft.rfft(wave)
    freqs = np.fft.rfftfreq(wave.size, 1.0 / sample_rate)
    gain = np.ones_like(freqs)
    if lowpass_hz is not None:
        gain /= np.sqrt(1.0 + (freqs / lowpass_hz) ** 8)
    if highpass_hz is not None:
        with np.errstate(divide="ignore"):
            gain /= np.sqrt(1.0 + (highpass_hz / np.maximum(freqs, 1e-9)) ** 4)
    return np.fft.irfft(spectrum * gain, n=wave.size)
