"""Canary for core.data.synth.espeak: it writes into espeak-ng's memory, so it must run only on a
library version whose layout it knows, and there the writes must visibly steer the audio."""

from __future__ import annotations

import ctypes
import types

import numpy as np
import pytest

from core.cli.synth import main
from core.data.synth import espeak
from core.data.synth.espeak import SUPPORTED_VERSIONS, Synthesizer, UnsupportedEspeakVersion
from core.errors import GnftError
from core.runtime import run_command


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    return Synthesizer()


def _f0(wave: np.ndarray, sample_rate: int) -> float:
    """Median pitch (Hz) of the loud 40 ms frames, from the autocorrelation peak between 60 and 400 Hz."""
    n = int(0.04 * sample_rate)
    lo, hi = int(sample_rate / 400), int(sample_rate / 60)
    frames = [wave[i : i + n].astype(np.float64) for i in range(0, wave.size - n, n // 2)]
    loudest = max(float(np.sqrt(np.mean(f**2))) for f in frames)
    found = []
    for frame in frames:
        if np.sqrt(np.mean(frame**2)) < 0.3 * loudest:
            continue
        frame = frame - frame.mean()
        corr = np.correlate(frame, frame, "full")[n - 1 :]
        found.append(sample_rate / (lo + int(np.argmax(corr[lo:hi]))))
    assert found, "no loud frame"
    return float(np.median(found))


# ----- (a) the installed library is a known version, and the state writes steer the audio ------


def test_installed_espeak_ng_is_a_supported_version(synth):
    assert synth.espeak_version in SUPPORTED_VERSIONS
    # read again straight from the library the engine loaded, not from the engine's cache
    assert espeak.library_version(ctypes.CDLL(espeak._Engine.get().library_path)) == synth.espeak_version
    assert synth.deterministic, "the state statics were not found: the layout no longer matches"


def test_a_word_is_audible_speech(synth):
    wave, rate = synth.synthesize("yes", "en-us", "m3", 175, 40, 50, seed=7)
    assert wave.dtype == np.float32 and wave.ndim == 1 and rate == 22050
    assert np.isfinite(wave).all() and np.abs(wave).max() <= 1.0
    assert 0.15 < wave.size / rate < 1.0
    assert np.sqrt(np.mean(wave**2)) > 0.02
    assert 70 < _f0(wave, rate) < 200  # a male voice at a low-middle pitch


def test_same_settings_same_waveform_even_after_other_words(synth):
    first, _ = synth.synthesize("yes", "en-us", "m3", 175, 40, 50, seed=7)
    synth.synthesize("marvin", "en-gb", "f2", 220, 80, 90, seed=3)  # leaves other state behind
    synth.synthesize("seven", "en-029", "klatt", 120, 10, 10, seed=99)
    again, _ = synth.synthesize("yes", "en-us", "m3", 175, 40, 50, seed=7)
    assert np.array_equal(first, again)


def test_different_speaker_settings_give_different_waveforms(synth):
    base, rate = synth.synthesize("no", "en-us", "m3", 175, 30, 50, seed=7)
    higher, _ = synth.synthesize("no", "en-us", "m3", 175, 70, 50, seed=7)
    female, _ = synth.synthesize("no", "en-us", "f3", 175, 30, 50, seed=7)
    reseeded, _ = synth.synthesize("no", "en-us", "m3", 175, 30, 50, seed=8)  # flutter phase and noise seeds
    for other in (higher, female, reseeded):
        assert not (other.size == base.size and np.array_equal(other, base))
    assert _f0(higher, rate) > 1.2 * _f0(base, rate)


# ----- (b) an unknown version is refused before anything is written ------------------------------


@pytest.mark.parametrize("version", ["1.51.1", "1.52.1", "1.53.0", "1.52-dev", "unknown"])
def test_check_version_refuses_other_versions_in_one_line(version):
    with pytest.raises(UnsupportedEspeakVersion) as caught:
        espeak.check_version(version, "/lib/libespeak-ng.so")
    message = str(caught.value)
    assert "\n" not in message and f"espeak-ng {version} found" in message
    assert all(v in message for v in SUPPORTED_VERSIONS) and "/lib/libespeak-ng.so" in message
    assert isinstance(caught.value, GnftError)


def test_check_version_accepts_the_supported_ones():
    for version in SUPPORTED_VERSIONS:
        espeak.check_version(version, "/lib/libespeak-ng.so")


def test_a_library_without_espeak_info_reports_unknown():
    assert espeak.library_version(types.SimpleNamespace()) == "unknown"


def test_simulated_unknown_version_is_refused_before_initialisation(monkeypatch):
    monkeypatch.setattr(espeak, "library_version", lambda lib: "1.49.2")
    monkeypatch.setattr(espeak._Engine, "_instance", None)  # force a fresh load; restored afterwards

    def must_not_run(self):
        raise AssertionError("espeak-ng was initialised (and its state written) despite an unknown version")

    monkeypatch.setattr(espeak._Engine, "_initialise", must_not_run)
    monkeypatch.setattr(espeak._Engine, "_reset_state", must_not_run)
    with pytest.raises(UnsupportedEspeakVersion, match=r"espeak-ng 1\.49\.2 found, but only 1\.52\.0 is supported"):
        Synthesizer()
    assert espeak._Engine._instance is None


def test_the_command_line_reports_an_unknown_version_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(espeak, "library_version", lambda lib: "1.49.2")
    monkeypatch.setattr(espeak._Engine, "_instance", None)
    assert run_command(main, ["--list-voices"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "1.49.2" in lines[0] and "1.52.0" in lines[0]
