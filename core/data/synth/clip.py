"""One corpus clip: a speaker's jittered utterance of a word, placed, band-limited, levelled and noised.

Every random draw comes from one stream seeded by (seed, word, speaker, n), in a fixed order,
so a clip is a pure function of its arguments and clips can be made in any order or in parallel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.audio import fix_length, resample
from core.data.synth.dsp import NOISE_COLOURS, band_limit, coloured_noise
from core.data.synth.espeak import Synthesizer
from core.data.synth.voices import SpeakerConfig, stable_int

__all__ = ["ClipInfo", "render_clip"]

_PUNCTUATION = (".", ".", ".", "!", "?")  # sentence mood: mostly statements
_MARGIN_SECONDS = 0.02  # kept free at each end of a clip when a word is placed


@dataclass
class ClipInfo:
    """What happened to one clip: its jittered settings and whether it had to be shortened."""

    rate: int
    pitch: int
    pitch_range: int
    punctuation: str
    onset_seconds: float
    word_seconds: float
    peak: float
    snr_db: float
    noise: str
    sped_up: bool = False
    cropped: bool = False


@dataclass(frozen=True)
class _Delivery:
    """How this utterance is said: the speaker's settings jittered, a sentence mood and espeak-ng's seed."""

    rate: int
    pitch: int
    pitch_range: int
    punctuation: str
    synth_seed: int


def _jitter(speaker: SpeakerConfig, rng: np.random.Generator) -> _Delivery:
    """Draw this utterance's rate (+-7 %), pitch (+-4), pitch range (+-8), punctuation and synthesis seed."""
    rate = int(np.clip(round(speaker.rate * rng.uniform(0.93, 1.07)), 80, 450))
    pitch = int(np.clip(speaker.pitch + rng.integers(-4, 5), 0, 100))
    pitch_range = int(np.clip(speaker.pitch_range + rng.integers(-8, 9), 0, 100))
    punctuation = _PUNCTUATION[int(rng.integers(len(_PUNCTUATION)))]
    return _Delivery(rate, pitch, pitch_range, punctuation, int(rng.integers(2**31)))


def _say_within(
    synth: Synthesizer,
    word: str,
    speaker: SpeakerConfig,
    how: _Delivery,
    sample_rate: int,
    room: int,
) -> tuple[np.ndarray, int, bool, bool]:
    """The word at ``sample_rate``, shape (<= room,): said faster once, then cropped, if it is too long.

    Returns the float64 wave, the rate finally used, and whether it was sped up and cropped.
    """

    def say(at_rate: int) -> np.ndarray:
        wave, rate_in = synth.synthesize(
            word,
            speaker.accent,
            speaker.variant,
            at_rate,
            how.pitch,
            how.pitch_range,
            seed=how.synth_seed,
            punctuation=how.punctuation,
        )
        return np.asarray(resample(wave, rate_in, sample_rate), dtype=np.float64)

    rate = how.rate
    wave = say(rate)
    sped_up = cropped = False
    if wave.size > room and rate < 450:
        rate = int(min(450, math.ceil(rate * wave.size / room * 1.05)))
        wave = say(rate)
        sped_up = True
    if wave.size > room:
        wave = fix_length(wave, max(room, 1))
        cropped = True
    return wave, rate, sped_up, cropped


def _level_and_noise(
    clip: np.ndarray,
    onset: int,
    length: int,
    rng: np.random.Generator,
    snr_db: tuple[float, float],
    peak_dbfs: tuple[float, float],
) -> tuple[np.ndarray, float, float, str]:
    """Scale the word in ``clip`` (shape (samples,)) to a random peak, add coloured noise at a random SNR.

    Returns the clip (clipped to a peak of 0.99), the peak drawn, the SNR in dB and the noise colour.
    """
    active = clip[onset : onset + length]
    peak = 10 ** (rng.uniform(*peak_dbfs) / 20)
    clip *= peak / max(float(np.max(np.abs(active))), 1e-9)
    signal_rms = float(np.sqrt(np.mean(clip[onset : onset + length] ** 2)))
    colour = NOISE_COLOURS[int(rng.integers(len(NOISE_COLOURS)))]
    snr = float(rng.uniform(*snr_db))
    clip += coloured_noise(clip.size, colour, rng) * signal_rms / 10 ** (snr / 20)
    top = float(np.max(np.abs(clip)))
    if top > 0.99:
        clip *= 0.99 / top
    return clip, peak, snr, colour


def render_clip(
    synth: Synthesizer,
    word: str,
    speaker: SpeakerConfig,
    n: int,
    seed: int,
    sample_rate: int = 16000,
    clip_seconds: float = 1.0,
    snr_db: tuple[float, float] = (20.0, 40.0),
    peak_dbfs: tuple[float, float] = (-18.0, -1.0),
) -> tuple[np.ndarray, ClipInfo]:
    """The ``n``-th utterance of ``word`` by ``speaker``: a float32 clip of shape
    (round(clip_seconds * sample_rate),) and how it was made.

    A pure function of its arguments (the random stream is seeded from seed, word, speaker
    and n), so clips can be made in any order or in parallel.
    """
    rng = np.random.default_rng([seed % 2**32, stable_int("clip", word, speaker.speaker_id, n) % 2**32])
    how = _jitter(speaker, rng)
    num_samples = int(round(clip_seconds * sample_rate))
    margin = int(round(_MARGIN_SECONDS * sample_rate))
    wave, rate, sped_up, cropped = _say_within(synth, word, speaker, how, sample_rate, num_samples - 2 * margin)

    onset = int(rng.integers(margin, num_samples - margin - wave.size + 1))
    clip = np.zeros(num_samples, dtype=np.float64)
    clip[onset : onset + wave.size] = wave
    clip = band_limit(clip, sample_rate, speaker.lowpass_hz, speaker.highpass_hz)
    clip, peak, snr, colour = _level_and_noise(clip, onset, wave.size, rng, snr_db, peak_dbfs)
    info = ClipInfo(
        rate,
        how.pitch,
        how.pitch_range,
        how.punctuation,
        onset / sample_rate,
        wave.size / sample_rate,
        float(min(peak, 0.99)),
        snr,
        colour,
        sped_up,
        cropped,
    )
    return clip.astype(np.float32), info
