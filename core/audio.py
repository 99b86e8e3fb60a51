"""WAV input/output with soundfile, mono mix-down, resampling and fixed-length clips.

Every clip that enters the engine goes through :func:`load_clip`: read, mix to mono,
resample, then pad or crop to a fixed number of samples, so that triggers and front
ends only ever see clips of one length and one rate.

Documented conversions (not errors): multi-channel files are mixed down to mono by
averaging the channels; integer PCM is scaled to [-1, 1); a file at another rate is
resampled (band-limited sinc, torchaudio) when a target rate is given; short clips are
zero-padded at the end, long clips are cropped to the window of highest energy.
Errors (:class:`DataError`, naming the file): a missing, empty, truncated or non-audio
file, and NaN or infinite samples.
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.transforms as AT

from core.errors import DataError

__all__ = [
    "read_wav",
    "load_clip",
    "to_mono",
    "resample",
    "fix_length",
    "write_wav",
]


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 ``[channels, frames]`` and its sample rate.

    Raises :class:`DataError` naming the file when it is missing, unreadable, empty,
    or holds NaN/Inf samples.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such audio file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); re-record or remove it")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: not a readable audio file ({exc}); check that it is a complete WAV") from exc
    if data.shape[0] == 0:
        raise DataError(f"{path}: the file holds no audio samples (0 frames)")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise DataError(f"{path}: {bad} samples are NaN or infinite; the file is corrupt and cannot be used")
    return np.ascontiguousarray(data.T), int(rate)


def to_mono(wave: np.ndarray) -> np.ndarray:
    """Mix ``[channels, frames]`` (or ``[frames]``) down to ``[frames]`` by averaging channels."""
    if wave.ndim == 1:
        return wave
    if wave.ndim != 2:
        raise ValueError(f"expected [channels, frames], got shape {tuple(wave.shape)}")
    return wave.mean(axis=0) if wave.shape[0] > 1 else wave[0]


def resample(wave: np.ndarray | torch.Tensor, orig_rate: int, new_rate: int) -> np.ndarray | torch.Tensor:
    """Resample along the last axis with torchaudio's band-limited sinc interpolation."""
    if orig_rate == new_rate:
        return wave
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    resampler = _resampler(int(orig_rate), int(new_rate))
    with torch.no_grad():
        if isinstance(wave, torch.Tensor):
            return resampler.to(wave.device)(wave) if wave.device.type != "cpu" else resampler(wave)
        return resampler(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))).numpy()


@lru_cache(maxsize=16)
def _resampler(orig_rate: int, new_rate: int) -> AT.Resample:
    """One resampler per rate pair: its sinc kernel is built once, not on every clip."""
    return AT.Resample(orig_rate, new_rate)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give a finished temporary file the usual permissions and rename it over ``path``.

    ``mkstemp`` creates files readable by the owner only; the final file should be as
    readable as any other file the user writes (0666 minus the umask).
    """
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def fix_length(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """Pad with zeros at the end, or crop to the ``num_samples`` window of highest energy.

    Cropping by energy keeps the spoken word of a long recording (FSDD clips reach
    2.3 s with silence around the word) instead of cutting it at an arbitrary edge.
    """
    n = wave.shape[-1]
    if n == num_samples:
        return wave
    if n < num_samples:
        pad = [(0, 0)] * (wave.ndim - 1) + [(0, num_samples - n)]
        return np.pad(wave, pad)
    energy = np.square(wave.astype(np.float64))
    if energy.ndim > 1:
        energy = energy.sum(axis=tuple(range(energy.ndim - 1)))
    csum = np.concatenate([[0.0], np.cumsum(energy)])
    window = csum[num_samples:] - csum[:-num_samples]
    start = int(np.argmax(window))
    return wave[..., start : start + num_samples]


def load_clip(
    path: str | os.PathLike,
    sample_rate: int = 16000,
    num_samples: int | None = 16000,
    *,
    allow_resample: bool = True,
) -> np.ndarray:
    """Load one clip as mono float32 ``[num_samples]`` at ``sample_rate``.

    ``num_samples=None`` keeps the natural length. With ``allow_resample=False`` a file
    at another rate is an error instead of being converted.
    """
    data, rate = read_wav(path)
    mono = to_mono(data)
    if rate != sample_rate:
        if not allow_resample:
            raise DataError(
                f"{path}: sample rate is {rate} Hz, expected {sample_rate} Hz; "
                "resample the file or allow resampling"
            )
        mono = resample(mono, rate, sample_rate)
    if num_samples is not None:
        mono = fix_length(mono, num_samples)
    return np.ascontiguousarray(mono, dtype=np.float32)


def write_wav(
    path: str | os.PathLike,
    wave: np.ndarray | torch.Tensor,
    sample_rate: int,
    subtype: str = "PCM_16",
) -> Path:
    """Write mono ``[frames]`` or ``[channels, frames]`` audio atomically (temp file + rename).

    Samples outside [-1, 1] are clipped for integer subtypes, as any WAV writer must.
    The target is never left half-written: on failure the temporary file is removed.
    """
    path = Path(path)
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu().numpy()
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.T
    elif wave.ndim != 1:
        raise ValueError(f"expected [frames] or [channels, frames], got shape {wave.shape}")
    if not np.isfinite(wave).all():
        raise DataError(f"{path}: refusing to write NaN or infinite samples")
    if subtype.startswith("PCM"):
        wave = np.clip(wave, -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, wave, int(sample_rate), subtype=subtype, format="WAV")
        publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
