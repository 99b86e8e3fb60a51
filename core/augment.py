"""Waveform augmentation for training: random time shift, speed perturbation, coloured noise.

Applied batch by batch on the training device, after poisoning (it is the victim's own
training pipeline, so a trigger is shifted and noised like the speech it sits in).
Deterministic: the random draws come from a generator seeded from the run's seed on the
data's device. ``parse_augment("default")`` is the preset the foundation benchmark uses for
the recurrent and AlexNet-like models: it closes most of the gap between validation and
the voice-held-out test split of the synthetic corpus.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from core.audio import resample
from core.errors import ConfigError
from core.options import OptionError, check_ranges, fields_of, option, parse_key_values

__all__ = ["AugmentConfig", "Augmenter", "parse_augment", "coloured_noise_like", "describe", "PRESETS"]

#: Noise colours as the exponent of a 1/f^alpha power spectrum.
NOISE_ALPHAS = {"white": 0.0, "pink": 1.0, "brown": 2.0}


@dataclass(frozen=True)
class AugmentConfig:
    """What to do to each training clip.

    ``shift_ms``: move the clip by a uniform offset in [-shift_ms, +shift_ms], zero-filled.
    ``speed``: (slowest, fastest) speed factors; each clip is resampled by one of five evenly
    spaced factors in that range (tempo and pitch change together, as Kaldi's speed
    perturbation), then centre-cropped or padded back to length. ``noise_prob``: share of clips
    that get white, pink or brown noise at a uniform SNR in ``snr_db``.
    """

    shift_ms: float = option(
        0.0,
        flag="shift",
        label="Shift, ms",
        range="[0, 10000]",
        help="move each clip by up to this many ms either way, zero-filled",
    )
    speed: tuple[float, float] | None = option(
        None, flag="speed", label="Speed range", help="slowest:fastest speed factor (tempo and pitch together)"
    )
    noise_prob: float = option(
        0.0,
        flag="noise",
        label="Noise share",
        percent=True,
        range="[0, 1]",
        help="share of clips given white, pink or brown noise",
    )
    snr_db: tuple[float, float] = option(
        (10.0, 30.0),
        flag="snr",
        label="Noise SNR, dB",
        range="[-60, 120]",
        help="lowest:highest signal-to-noise ratio of the added noise in dB",
    )

    def __post_init__(self) -> None:
        if self.shift_ms < 0:
            raise ConfigError(f"augment shift must be >= 0 ms, got {self.shift_ms}")
        if not 0.0 <= self.noise_prob <= 1.0:
            raise ConfigError(f"augment noise probability must be in [0, 1], got {self.noise_prob}")
        if self.speed is not None:
            lo, hi = self.speed
            if not 0.5 <= lo <= hi <= 2.0:
                raise ConfigError(f"augment speed range must satisfy 0.5 <= slowest <= fastest <= 2, got {lo}:{hi}")
        if self.snr_db[0] > self.snr_db[1]:
            raise ConfigError(f"augment SNR range is reversed: {self.snr_db[0]}:{self.snr_db[1]}")
        check_ranges(self)  # finite numbers inside the declared ranges (nan passes the comparisons above)

    @property
    def active(self) -> bool:
        return self.shift_ms > 0 or self.noise_prob > 0 or (self.speed is not None and self.speed != (1.0, 1.0))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> AugmentConfig:
        d = dict(d or {})
        if d.get("speed") is not None:
            d["speed"] = tuple(d["speed"])
        if "snr_db" in d:
            d["snr_db"] = tuple(d["snr_db"])
        return cls(**d)


PRESETS = {
    "none": AugmentConfig(),
    "default": AugmentConfig(shift_ms=100.0, speed=(0.9, 1.1), noise_prob=0.8, snr_db=(10.0, 30.0)),
}


def parse_augment(spec: str | None) -> AugmentConfig:
    """``none``, ``default`` or ``key=value`` pairs: ``shift=100,speed=0.9:1.1,noise=0.8,snr=10:30``
    (the keys are the fields' short names, read by :func:`core.options.parse_key_values`)."""
    if not spec:
        return AugmentConfig()
    if spec in PRESETS:
        return PRESETS[spec]
    try:
        return AugmentConfig(**parse_key_values(AugmentConfig, spec.split(","), "--augment"))
    except OptionError as err:
        if err.reason == "unknown":
            keys = ", ".join(s.key for s in fields_of(AugmentConfig))
            raise ConfigError(
                f"unknown augmentation {err.key!r}; use {keys} or a preset ({', '.join(PRESETS)})"
            ) from None
        raise ConfigError(
            f"cannot read augmentation {err.item!r}: expected e.g. shift=100, speed=0.9:1.1, noise=0.8, snr=10:30"
        ) from None


def coloured_noise_like(x: torch.Tensor, alphas: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Unit-RMS Gaussian noise shaped like ``x [B, T]``, row i with a 1/f^alphas[i] power spectrum."""
    n = x.shape[-1]
    white = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    spec = torch.fft.rfft(white, dim=-1)
    freqs = torch.arange(spec.shape[-1], device=x.device, dtype=torch.float32).clamp_min(1.0)
    gain = freqs.unsqueeze(0).pow(-alphas.unsqueeze(1) / 2)
    gain[:, 0] = 0.0
    noise = torch.fft.irfft(spec * gain, n=n, dim=-1)
    return noise / noise.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-12)


class Augmenter:
    """Callable ``[B, T] -> [B, T]`` doing what an :class:`AugmentConfig` asks, reproducibly."""

    def __init__(self, config: AugmentConfig, sample_rate: int, device: torch.device | str, seed: int) -> None:
        self.config = config
        self.sample_rate = sample_rate
        self.generator = torch.Generator(device=torch.device(device))
        self.generator.manual_seed(int(seed) * 7919 + 17)  # a stream apart from batch order and init
        if config.speed is not None:
            lo, hi = config.speed
            self.factors = sorted({round(lo + (hi - lo) * k / 4, 3) for k in range(5)})
        else:
            self.factors = [1.0]
        self.alphas = torch.tensor(list(NOISE_ALPHAS.values()), device=device)

    def _uniform(self, n: int, lo: float, hi: float, device: torch.device) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=self.generator, device=device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.config.active:
            return x
        with torch.no_grad():
            if self.factors != [1.0]:
                x = self._speed(x)
            if self.config.shift_ms > 0:
                x = self._shift(x)
            if self.config.noise_prob > 0:
                x = self._noise(x)
        return x

    def _speed(self, x: torch.Tensor) -> torch.Tensor:
        n, t = x.shape
        choice = torch.randint(len(self.factors), (n,), generator=self.generator, device=x.device)
        out = x.clone()
        for k, factor in enumerate(self.factors):
            rows = (choice == k).nonzero().flatten()
            if factor == 1.0 or rows.numel() == 0:
                continue
            # speed f: play the clip at f times the rate = resample from 1000*f to 1000 samples/unit
            y = resample(x.index_select(0, rows), int(round(1000 * factor)), 1000)
            length = y.shape[-1]
            if length >= t:
                start = (length - t) // 2
                y = y[:, start : start + t]
            else:
                left = (t - length) // 2
                y = torch.nn.functional.pad(y, (left, t - length - left))
            out[rows] = y
        return out

    def _shift(self, x: torch.Tensor) -> torch.Tensor:
        n, t = x.shape
        max_shift = int(round(self.config.shift_ms * self.sample_rate / 1000))
        max_shift = min(max_shift, t - 1)
        shifts = torch.randint(-max_shift, max_shift + 1, (n,), generator=self.generator, device=x.device)
        src = torch.arange(t, device=x.device).unsqueeze(0) - shifts.unsqueeze(1)
        valid = (src >= 0) & (src < t)
        return torch.where(valid, x.gather(1, src.clamp(0, t - 1)), torch.zeros((), device=x.device, dtype=x.dtype))

    def _noise(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        hit = torch.rand(n, generator=self.generator, device=x.device) < self.config.noise_prob
        colour = torch.randint(len(self.alphas), (n,), generator=self.generator, device=x.device)
        snr = self._uniform(n, *self.config.snr_db, x.device)
        noise = coloured_noise_like(x, self.alphas[colour], self.generator)
        clip_rms = x.pow(2).mean(dim=-1).sqrt()
        gain = clip_rms * torch.pow(10.0, -snr / 20) * hit
        return x + gain.unsqueeze(1) * noise


def describe(config: AugmentConfig) -> str:
    """One line for logs and reports."""
    if not config.active:
        return "none"
    parts = []
    if config.shift_ms:
        parts.append(f"shift ±{config.shift_ms:g} ms")
    if config.speed is not None:
        parts.append(f"speed {config.speed[0]:g}-{config.speed[1]:g}")
    if config.noise_prob:
        parts.append(f"noise p={config.noise_prob:g} at {config.snr_db[0]:g}-{config.snr_db[1]:g} dB SNR")
    return ", ".join(parts)
