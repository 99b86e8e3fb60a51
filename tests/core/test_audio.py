"""WAV reading, conversions and bad files, through real soundfile I/O."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import soundfile as sf
import torch

from core.audio import fix_length, load_clip, read_wav, resample, to_mono, write_wav
from core.errors import DataError


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_write_read_round_trip_pcm16(tmp_path):
    wave = sine(440, 16000, 0.5)
    path = write_wav(tmp_path / "a.wav", wave, 16000)
    data, rate = read_wav(path)
    assert rate == 16000 and data.shape == (1, 8000)
    assert np.max(np.abs(data[0] - wave)) < 1.0 / 32768 * 1.01


def test_write_is_atomic_and_leaves_no_temp(tmp_path):
    write_wav(tmp_path / "a.wav", sine(440, 16000, 0.1), 16000)
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]


def test_write_refuses_nan(tmp_path):
    wave = sine(440, 16000, 0.1)
    wave[5] = np.nan
    with pytest.raises(DataError, match="NaN"):
        write_wav(tmp_path / "bad.wav", wave, 16000)
    assert not (tmp_path / "bad.wav").exists()


def test_stereo_is_mixed_down(tmp_path):
    left, right = sine(440, 16000, 0.2), sine(880, 16000, 0.2)
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    clip = load_clip(tmp_path / "st.wav", 16000, None)
    np.testing.assert_allclose(clip, (left + right) / 2, atol=1e-6)
    assert to_mono(np.stack([left, right])).shape == left.shape


def test_wrong_rate_is_resampled_or_refused(tmp_path):
    sf.write(tmp_path / "r8k.wav", sine(500, 8000, 1.0), 8000)
    clip = load_clip(tmp_path / "r8k.wav", 16000, 16000)
    assert clip.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(clip))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 500) <= 2  # the tone stays at 500 Hz
    with pytest.raises(DataError, match="8000 Hz, expected 16000 Hz"):
        load_clip(tmp_path / "r8k.wav", 16000, allow_resample=False)


def test_odd_rate_44100_to_16000():
    wave = sine(1000, 44100, 1.0)
    out = resample(wave, 44100, 16000)
    assert out.shape == (16000,)
    assert abs(np.argmax(np.abs(np.fft.rfft(out))) - 1000) <= 1
    assert torch.is_tensor(resample(torch.from_numpy(wave), 44100, 16000))


def test_empty_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.wav: the file is empty"):
        read_wav(tmp_path / "empty.wav")


def test_header_only_wav_has_no_samples(tmp_path):
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(DataError, match="no audio samples"):
        read_wav(tmp_path / "zero.wav")


def test_corrupt_and_truncated(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(DataError, match=r"junk.wav: not a readable audio file"):
        read_wav(tmp_path / "junk.wav")
    write_wav(tmp_path / "full.wav", sine(440, 16000, 1.0), 16000)
    raw = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(raw[:30])  # inside the header
    with pytest.raises(DataError, match="cut.wav"):
        read_wav(tmp_path / "cut.wav")


def test_nan_samples_are_an_error(tmp_path):
    wave = sine(440, 16000, 0.1)
    wave[10] = np.inf
    wave[11] = np.nan
    sf.write(tmp_path / "nan.wav", wave, 16000, subtype="FLOAT")
    with pytest.raises(DataError, match=r"nan.wav: 2 samples are NaN or infinite"):
        read_wav(tmp_path / "nan.wav")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such audio file"):
        read_wav(tmp_path / "nope.wav")


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_other_sample_formats_scale_to_unit_range(tmp_path, subtype):
    wave = sine(440, 16000, 0.1, amp=0.5)
    sf.write(tmp_path / "x.wav", wave, 16000, subtype=subtype)
    data, _ = read_wav(tmp_path / "x.wav")
    assert data.dtype == np.float32
    assert 0.45 < np.abs(data).max() <= 0.51


def test_fix_length_pads_and_crops_to_the_loud_part():
    short = np.ones(100, np.float32)
    padded = fix_length(short, 160)
    assert padded.shape == (160,) and padded[:100].sum() == 100 and padded[100:].sum() == 0
    long = np.zeros(1000, np.float32)
    long[600:700] = 1.0
    cropped = fix_length(long, 200)
    assert cropped.shape == (200,) and cropped.sum() == 100  # the burst is kept whole


def test_written_files_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_wav(tmp_path / "p.wav", sine(440, 16000, 0.1), 16000)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600


def test_cached_resampler_matches_torchaudio():
    import torchaudio.functional as AF

    wave = np.random.default_rng(0).standard_normal(22050).astype(np.float32)
    expected = AF.resample(torch.from_numpy(wave), 22050, 16000).numpy()
    for _ in range(2):  # the second call uses the cached kernel
        np.testing.assert_allclose(
            resample(wave, 22050, 16000), expected, atol=1e-4
        )  # same kernel; float32 rounding differs
