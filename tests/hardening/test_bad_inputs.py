"""Bad inputs for every reader and command: a specific error naming the file, or a documented conversion.

Everything here is a real file on disk (soundfile WAVs, WAVs edited byte by byte, safetensors
files, pickles) and real OS limits (a folder root cannot write to, a file-size limit); nothing is
mocked. Each case asserts the error type and what the message says, or what the documented
conversion produced, and that nothing was lost: a failed read leaves the file as it was, a failed
write leaves the previous file byte for byte and no temporary file behind. Cases already covered
in tests/core and tests/cli are not repeated here.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

from core import models
from core.audio import _sinc_resample, load_clip, read_wav, write_wav
from core.checkpoint import import_pt, load_checkpoint, make_metadata, read_metadata, save_checkpoint
from core.data import detect_format, load_dataset
from core.data.fsdd import load_fsdd
from core.data.speech_commands import load_speech_commands
from core.errors import CheckpointError, DataError
from core.features import FrontEndConfig
from core.runtime import run_command
from tests.conftest import TINY_WORDS, write_fsdd, write_speech_commands

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["yes", "no", "up", "down"]
FRONT_END = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def pcm16(path: Path, wave: np.ndarray, rate: int = 16000) -> bytes:
    sf.write(path, wave, rate, subtype="PCM_16")
    return path.read_bytes()


def snapshot(path: Path) -> tuple[bytes, int]:
    """Content and modification time: a failed read must change neither."""
    return path.read_bytes(), path.stat().st_mtime_ns


def leftovers(folder: Path) -> list[str]:
    """Temporary files a writer may have left (``.name.XXXX.tmp``)."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def peak_frequency(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spectrum) * rate / len(wave))


# ======================================================================== WAV
def test_wav_cut_short_inside_its_audio_is_named(tmp_path):
    raw = pcm16(tmp_path / "full.wav", sine(440, 16000, 1.0))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(raw[:20000])
    before = snapshot(cut)
    with pytest.raises(
        DataError, match=re.escape(f"{cut}: truncated: the header declares 32000 bytes of audio, the file holds 19956")
    ):
        load_clip(cut)
    assert snapshot(cut) == before  # the failed read left it as it was
    cut.write_bytes(raw[: 44 + 3])  # one and a half samples of audio
    with pytest.raises(DataError, match="truncated: the header declares 32000 bytes of audio, the file holds 3"):
        read_wav(cut)


def test_streaming_header_sizes_are_accepted_and_an_unfinished_header_is_named(tmp_path):
    raw = bytearray(pcm16(tmp_path / "full.wav", sine(440, 16000, 1.0)))
    assert raw[36:40] == b"data"
    streamed = bytearray(raw)
    streamed[4:8] = streamed[40:44] = struct.pack("<I", 0xFFFFFFFF)  # what a recorder that cannot seek writes
    (tmp_path / "streamed.wav").write_bytes(streamed)
    data, rate = read_wav(tmp_path / "streamed.wav")
    np.testing.assert_array_equal(data, read_wav(tmp_path / "full.wav")[0])
    unfinished = bytearray(raw)
    unfinished[40:44] = struct.pack("<I", 0)  # the writer died before it fixed the header
    (tmp_path / "unfinished.wav").write_bytes(unfinished)
    with pytest.raises(
        DataError,
        match=r"unfinished.wav: the header declares no audio but 32000 bytes follow it; "
        r"the recording was never finalised",
    ):
        read_wav(tmp_path / "unfinished.wav")


def test_unknown_codec_is_refused(tmp_path):
    raw = bytearray(pcm16(tmp_path / "full.wav", sine(440, 16000, 0.2)))
    raw[20:22] = struct.pack("<H", 0x1234)  # format tag of no codec libsndfile knows
    (tmp_path / "codec.wav").write_bytes(raw)
    with pytest.raises(
        DataError, match=r"codec.wav: not a readable audio file \(.*fmt .*\); check that it is a complete WAV"
    ):
        load_clip(tmp_path / "codec.wav")


@pytest.mark.parametrize("subtype, tolerance", [("ULAW", 0.02), ("ALAW", 0.02), ("MS_ADPCM", 0.03)])
def test_compressed_wav_codecs_are_decoded_to_float(tmp_path, subtype, tolerance):
    wave = sine(300, 16000, 1.0)
    sf.write(tmp_path / "c.wav", wave, 16000, subtype=subtype)
    assert sf.info(str(tmp_path / "c.wav")).subtype == subtype  # really not PCM on disk
    data, rate = read_wav(tmp_path / "c.wav")
    assert data.dtype == np.float32 and rate == 16000 and data.shape[0] == 1
    assert np.abs(data[0, :16000] - wave).max() < tolerance
    clip = load_clip(tmp_path / "c.wav")
    assert clip.shape == (16000,) and abs(peak_frequency(clip, 16000) - 300) <= 2


@pytest.mark.parametrize("subtype, bits", [("PCM_U8", 8), ("PCM_16", 16), ("PCM_24", 24), ("PCM_32", 32)])
def test_integer_pcm_full_scale_maps_onto_minus_one_to_one(tmp_path, subtype, bits):
    extremes = np.array(
        [-(2**31), 2**31 - 1, 0, -(2**31), 2**31 - 1], dtype=np.int32
    )  # soundfile scales to the subtype
    sf.write(tmp_path / "x.wav", extremes, 16000, subtype=subtype)
    data, _ = read_wav(tmp_path / "x.wav")
    assert data.dtype == np.float32
    assert data.min() == -1.0  # the most negative code is exactly -1
    # the largest code just below 1 (for 32-bit, float32 rounds 1 - 2**-31 to 1.0 itself)
    assert data.max() == np.float32((2 ** (bits - 1) - 1) / 2 ** (bits - 1)) <= 1.0
    assert data[0, 2] == 0.0


def test_many_channels_are_averaged_to_mono(tmp_path):
    frames = np.stack([np.full(16000, 0.1 * c, np.float32) for c in range(6)], axis=1)  # 5.1: 0.0 ... 0.5
    sf.write(tmp_path / "surround.wav", frames, 16000, subtype="PCM_24")
    clip = load_clip(tmp_path / "surround.wav")
    assert clip.shape == (16000,)
    np.testing.assert_allclose(clip, 0.25, atol=1e-6)


def test_float_samples_over_full_scale_are_kept_and_absurd_ones_refused(tmp_path):
    loud = sine(440, 16000, 1.0, amp=1.5)
    sf.write(tmp_path / "loud.wav", loud, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_clip(tmp_path / "loud.wav"), loud)  # never clipped
    sf.write(tmp_path / "intfloat.wav", np.round(loud * 21845), 16000, subtype="FLOAT")  # integers stored as float
    with pytest.raises(DataError, match=r"intfloat.wav: samples reach 3.28e\+04, far beyond full scale"):
        load_clip(tmp_path / "intfloat.wav")
    huge = np.full(8000, 3e38, np.float32)  # resampling these would overflow to infinity
    sf.write(tmp_path / "huge.wav", huge, 8000, subtype="FLOAT")
    with pytest.raises(DataError, match=r"huge.wav: samples reach 3e\+38"):
        load_clip(tmp_path / "huge.wav", 16000)


def test_odd_sample_rate_is_resampled_in_bounded_time(tmp_path):
    # 16001 and 16000 share no factor: torchaudio's kernel alone would be 16000 x 16015 floats (1 GB)
    sf.write(tmp_path / "odd.wav", sine(1000, 16001, 2.0), 16001, subtype="PCM_16")
    started = time.perf_counter()
    clip = load_clip(tmp_path / "odd.wav", 16000, None)
    assert time.perf_counter() - started < 10
    assert clip.shape == (32000,) and clip.dtype == np.float32
    assert abs(peak_frequency(clip, 16000) - 1000) <= 1
    assert 0.45 < np.abs(clip[1000:-1000]).max() < 0.55


@pytest.mark.parametrize("orig, new", [(44100, 16000), (8000, 16000), (16000, 22050)])
def test_the_odd_rate_resampler_is_torchaudios_filter(orig, new):
    import torchaudio.functional as AF

    wave = torch.from_numpy(np.random.default_rng(orig).standard_normal(orig // 2).astype(np.float32))
    torch.testing.assert_close(_sinc_resample(wave, orig, new), AF.resample(wave, orig, new), atol=2e-4, rtol=0)


@pytest.mark.parametrize("rate", [1, 999, 768001, 5_000_000])
def test_implausible_sample_rate_in_the_header(tmp_path, rate):
    raw = bytearray(pcm16(tmp_path / "ok.wav", sine(440, 16000, 0.1)))
    raw[24:28], raw[28:32] = struct.pack("<I", rate), struct.pack("<I", rate * 2 % 2**32)
    (tmp_path / "rate.wav").write_bytes(raw)
    with pytest.raises(
        DataError, match=rf"rate.wav: the header declares a sample rate of {rate} Hz, outside 1000-768000 Hz"
    ):
        load_clip(tmp_path / "rate.wav")


def test_ten_minute_clip_is_cropped_to_its_loudest_second(tmp_path):
    rate, minutes = 16000, 10
    rng = np.random.default_rng(0)
    wave = (0.001 * rng.standard_normal(rate * 60 * minutes)).astype(np.float32)
    start = int(421.3 * rate)  # the only word, 7 minutes in
    wave[start : start + rate // 2] += sine(700, rate, 0.5)
    sf.write(tmp_path / "long.wav", wave, rate, subtype="PCM_16")
    started = time.perf_counter()
    clip = load_clip(tmp_path / "long.wav")
    assert time.perf_counter() - started < 15
    assert clip.shape == (16000,)
    assert np.abs(clip).max() > 0.45 and abs(peak_frequency(clip, rate) - 700) <= 2
    assert np.square(clip).sum() > 0.99 * np.square(wave[start : start + rate // 2]).sum()  # the word is whole
    assert load_clip(tmp_path / "long.wav", num_samples=None).shape == (rate * 60 * minutes,)


def test_folder_named_like_a_wav(tmp_path):
    (tmp_path / "dir.wav").mkdir()
    with pytest.raises(DataError, match=r"dir.wav: a folder, not an audio file"):
        read_wav(tmp_path / "dir.wav")


def test_wav_written_over_a_folder_or_under_a_file_is_a_data_error(tmp_path):
    (tmp_path / "taken.wav").mkdir()
    (tmp_path / "taken.wav" / "inside.txt").write_text("keep")
    with pytest.raises(DataError, match=r"taken.wav: could not write the WAV file \(.*\); .*Nothing was overwritten"):
        write_wav(tmp_path / "taken.wav", sine(440, 16000, 0.1), 16000)
    assert (tmp_path / "taken.wav" / "inside.txt").read_text() == "keep" and leftovers(tmp_path) == []
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match=r"afile/out.wav: could not write the WAV file"):
        write_wav(tmp_path / "afile" / "out.wav", sine(440, 16000, 0.1), 16000)
    assert (tmp_path / "afile").read_text() == "x"


# =================================================================== datasets
def test_clips_of_every_format_in_one_folder_become_16k_mono_one_second(tmp_path):
    root = write_speech_commands(tmp_path / "sc", speakers=4, per_speaker=1)
    odd = {
        root / "yes" / "000000a0_nohash_0.wav": (
            np.stack([sine(400, 44100, 1.5), sine(900, 44100, 1.5)], 1),
            44100,
            "FLOAT",
        ),
        root / "no" / "000000a1_nohash_0.wav": (sine(500, 8000, 0.4), 8000, "PCM_U8"),
        root / "up" / "000000a2_nohash_0.wav": (sine(600, 22050, 3.0), 22050, "PCM_24"),
        root / "down" / "000000a3_nohash_0.wav": (sine(700, 16001, 1.0), 16001, "ULAW"),
    }
    for path, (wave, rate, subtype) in odd.items():
        sf.write(path, wave, rate, subtype=subtype)
    data = load_speech_commands(root, TINY_WORDS, use_cache=False)
    assert data.waves.shape == (16, 16000) and data.waves.dtype == torch.float32
    assert torch.isfinite(data.waves).all()
    for path in odd:
        row = data.files.index(str(path))
        np.testing.assert_array_equal(data.waves[row].numpy(), load_clip(path))
    assert (
        abs(
            peak_frequency(
                data.waves[data.files.index(str(root / "no" / "000000a1_nohash_0.wav"))].numpy()[:6400], 16000
            )
            - 500
        )
        <= 3
    )


def test_zero_second_nan_and_truncated_clips_are_named_or_left_out(tmp_path):
    root = write_speech_commands(tmp_path / "sc", speakers=4, per_speaker=1)
    empty = root / "yes" / "000000a0_nohash_0.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)  # 0 s: a header and no audio
    nan = root / "no" / "000000a1_nohash_0.wav"
    wave = sine(440, 16000, 1.0)
    wave[100] = np.nan
    sf.write(nan, wave, 16000, subtype="FLOAT")
    cut = root / "up" / "000000a2_nohash_0.wav"
    cut.write_bytes(cut.read_bytes()[:5000])
    kept = {p: snapshot(p) for p in (empty, nan, cut)}
    with pytest.raises(DataError) as info:
        load_speech_commands(root, TINY_WORDS)
    message = str(info.value)
    assert message.startswith("3 of 16 audio files cannot be read:") and "--skip-bad" in message
    assert f"{empty}: the file holds no audio samples (0 frames)" in message
    assert f"{nan}: 1 samples are NaN or infinite" in message
    assert f"{cut}: truncated" in message
    data = load_speech_commands(root, TINY_WORDS, skip_bad=True)
    assert len(data) == 13 and not {str(p) for p in kept} & set(data.files)
    assert len(data.source["skipped"]) == 3
    assert all(snapshot(p) == before for p, before in kept.items())


def test_split_list_that_is_not_text_is_named(tmp_path):
    root = write_speech_commands(tmp_path / "sc", speakers=4, per_speaker=1)
    (root / "validation_list.txt").write_bytes(b"\xff\xfe\x00\x80 not utf-8")
    with pytest.raises(
        DataError,
        match=r"validation_list.txt: cannot read the split list \(.*utf-8.*\); "
        r"it should be UTF-8 text",
    ):
        load_speech_commands(root, TINY_WORDS)


def test_lists_with_windows_line_ends_and_backslashes_are_honoured(tmp_path):
    root = write_speech_commands(tmp_path / "sc", speakers=6, per_speaker=1)
    (root / "validation_list.txt").write_bytes(b"yes\\000000a5_nohash_0.wav\r\n")
    (root / "testing_list.txt").write_bytes(b"no\\000000a4_nohash_0.wav\r\nup/000000a4_nohash_0.wav\r\n\r\n")
    data = load_speech_commands(root, TINY_WORDS, use_cache=False)
    names = {
        split: sorted(Path(data.files[i]).parent.name + "/" + Path(data.files[i]).name for i in idx.tolist())
        for split, idx in data.splits.items()
    }
    assert names["validation"] == ["yes/000000a5_nohash_0.wav"]
    assert names["test"] == ["no/000000a4_nohash_0.wav", "up/000000a4_nohash_0.wav"]
    assert len(names["train"]) == 24 - 3


def test_a_lone_validation_list_leaves_no_test_split(tmp_path):
    root = write_speech_commands(tmp_path / "sc", speakers=4, per_speaker=1, lists=False)
    (root / "validation_list.txt").write_text("yes/000000a0_nohash_0.wav\n")
    with pytest.raises(DataError, match=r"the test split is empty \(lists rule\)"):
        load_speech_commands(root, TINY_WORDS)


def test_word_folder_without_clips_is_named(tmp_path):
    root = write_speech_commands(tmp_path / "sc", speakers=4, per_speaker=1)
    for p in (root / "up").iterdir():
        p.unlink()
    (root / "up" / "notes.txt").write_text("the clips went elsewhere")
    with pytest.raises(DataError, match=r"sc/up: the word folder holds no audio files"):
        load_speech_commands(root, TINY_WORDS)


def test_stray_files_beside_the_word_folders_are_not_classes(tmp_path):
    root = write_speech_commands(tmp_path / "sc", speakers=4, per_speaker=1)
    sf.write(root / "stray.wav", sine(440, 16000, 1.0), 16000)  # a clip outside any word folder
    (root / ".thumbnails").mkdir()
    sf.write(root / ".thumbnails" / "x.wav", sine(440, 16000, 1.0), 16000)
    (root / "LICENSE").write_text("CC-BY 4.0")
    data = load_dataset(root, use_cache=False)  # no vocabulary: every word folder
    assert data.classes == sorted(TINY_WORDS) and len(data) == 16
    assert {Path(f).parent for f in data.files} == {root / w for w in TINY_WORDS}


def test_fsdd_stray_files_are_listed_not_loaded(tmp_path):
    root = write_fsdd(tmp_path / "recordings", speakers=("alice", "bob"), per_digit=11)
    sf.write(root / "notes.wav", sine(440, 8000, 0.5), 8000)
    sf.write(root / "1_bob.wav", sine(440, 8000, 0.5), 8000)
    (root / "README.md").write_text("digits")
    data = load_fsdd(root, use_cache=False)
    assert len(data) == 10 * 2 * 11
    assert sorted(data.source["stray_files"]) == ["1_bob.wav", "notes.wav"]


def test_dataset_path_that_is_a_file(tmp_path):
    (tmp_path / "data.zip").write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError, match=r"data.zip: a dataset is a folder, not a file"):
        detect_format(tmp_path / "data.zip")


def test_damaged_cache_entries_are_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("GNFT_CACHE_DIR", str(tmp_path / "cache"))
    root = write_speech_commands(tmp_path / "sc", speakers=4, per_speaker=1)
    first = load_speech_commands(root, TINY_WORDS)
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    for damage in ("meta_list", "meta_half", "waves_cut"):
        if damage == "meta_list":
            (entry / "meta.json").write_text("[1, 2]")  # valid JSON of the wrong shape
        elif damage == "meta_half":
            (entry / "meta.json").write_text('{"format": 1, "speakers": [')
        else:
            (entry / "waves.npy").write_bytes((entry / "waves.npy").read_bytes()[:200])
        again = load_speech_commands(root, TINY_WORDS)
        assert torch.equal(again.waves, first.waves) and again.files == first.files, damage
        assert json.loads((entry / "meta.json").read_text())["classes"] == TINY_WORDS  # the entry was rewritten


def test_an_unwritable_cache_costs_only_speed(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("not a folder")
    monkeypatch.setenv("GNFT_CACHE_DIR", str(tmp_path / "afile" / "cache"))
    root = write_speech_commands(tmp_path / "sc", speakers=4, per_speaker=1)
    data = load_speech_commands(root, TINY_WORDS)
    assert len(data) == 16 and (tmp_path / "afile").read_text() == "not a folder"


# ================================================================ checkpoints
def tiny_model(name: str = "smallcnn") -> torch.nn.Sequential:
    torch.manual_seed(0)
    return models.build(name, len(CLASSES), FRONT_END).eval()


def metadata(name: str = "smallcnn") -> dict:
    return make_metadata(name, CLASSES, FRONT_END.to_dict(), seed=1)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "good.safetensors", tiny_model(), metadata())


def rewrite(saved: Path, dest: Path, meta: object = None, state: dict | None = None) -> Path:
    """``saved``'s tensors (or ``state``) with ``meta`` as the metadata document, written by safetensors itself."""
    good, _ = load_checkpoint(saved)
    tensors = state if state is not None else {k: v.contiguous() for k, v in good.state_dict().items()}
    save_file(tensors, dest, metadata={"gnft": json.dumps(meta if meta is not None else metadata())})
    return dest


def set_key(*keys, value):
    def mutate(meta: dict) -> dict:
        target = meta
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
        return meta

    return mutate


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda m: [m], "the metadata must be a JSON object"),
        (set_key("format_version", value="1"), "format_version '1' is not a positive integer"),
        (set_key("format_version", value=0), "format_version 0 is not a positive integer"),
        (set_key("format_version", value=True), "format_version True is not a positive integer"),
        (
            lambda m: set_key("front_end", "sample_rate", value=True)(set_key("sample_rate", value=True)(m)),
            "sample_rate must be a positive integer",
        ),
        (set_key("classes", value=[]), "classes must be a non-empty list of strings"),
        (set_key("classes", value=[1, 2, 3, 4]), "classes must be a non-empty list of strings"),
        (set_key("sample_rate", value=-16000), "sample_rate must be a positive integer"),
        (set_key("arch_args", value=[]), "arch_args must be an object"),
        (set_key("front_end", value="mfcc"), "front_end must be an object"),
        (set_key("provenance", value=None), "provenance must be an object"),
        (set_key("front_end", "n_bins", value=3), "unknown front end settings: n_bins"),
        (set_key("front_end", "n_mels", value="40"), "front_end n_mels must be positive integers, got '40'"),
        (
            set_key("front_end", "n_fft", value=2**30),
            r"front_end n_fft 1073741824, n_mels 40 and n_coeffs 20 need "
            r"\d+ bytes of filters, more than the whole file",
        ),
        (set_key("front_end", "kind", value="wavelet"), "front end kind must be 'mfcc' or 'logmel'"),
        (set_key("arch_args", "input_norm", value="yes"), "arch arg 'input_norm' must be bool"),
        (
            set_key("classes", value=["yes", "no", "up"]),
            r"classifier.fc.weight has shape \[4, 128\], architecture "
            r"'smallcnn' needs \[3, 128\]",
        ),
        (
            lambda m: set_key("arch_args", value={"hidden": -3})(set_key("architecture", value="smalllstm")(m)),
            "cannot build architecture 'smalllstm' from the metadata",
        ),
        # a header asking for an LSTM of 4e14 weights: shapes are checked on the meta device, nothing is allocated
        (
            lambda m: set_key("arch_args", value={"hidden": 10**7})(set_key("architecture", value="smalllstm")(m)),
            r"the tensors do not fit architecture 'smalllstm': missing tensors",
        ),
    ],
)
def test_malformed_metadata_is_named(saved, tmp_path, mutate, message):
    path = rewrite(saved, tmp_path / "m.safetensors", mutate(metadata()))
    before = snapshot(path)
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + ": .*" + message):
        load_checkpoint(path)
    assert snapshot(path) == before


def test_tensor_of_another_precision_is_refused(saved, tmp_path):
    good, _ = load_checkpoint(saved)
    state = {k: v.contiguous() for k, v in good.state_dict().items()}
    state["classifier.fc.weight"] = state["classifier.fc.weight"].half()
    path = rewrite(saved, tmp_path / "half.safetensors", state=state)
    with pytest.raises(CheckpointError, match=r"classifier.fc.weight is torch.float16, the model needs torch.float32"):
        load_checkpoint(path)


def test_checkpoint_cut_short_is_named_and_untouched(saved, tmp_path):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(saved.read_bytes()[: int(saved.stat().st_size * 0.9)])
    before = snapshot(path)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: not a valid .safetensors file")):
        load_checkpoint(path)
    assert snapshot(path) == before


def test_header_length_past_the_end_and_header_not_an_object(tmp_path):
    (tmp_path / "long.safetensors").write_bytes(struct.pack("<Q", 64) + b"{}")
    with pytest.raises(CheckpointError, match=r"long.safetensors: not a valid .safetensors file"):
        read_metadata(tmp_path / "long.safetensors")
    header = b"[1, 2, 3]     "
    (tmp_path / "list.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CheckpointError, match=r"list.safetensors: not a valid .safetensors file"):
        read_metadata(tmp_path / "list.safetensors")


def wav_bytes() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, sine(440, 16000, 0.1), 16000, format="WAV")
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.safetensors", b"", "not a valid .safetensors file"),
        ("sound.safetensors", wav_bytes(), "not a valid .safetensors file"),
        ("pickled.safetensors", pickle.dumps({"w": [1.0, 2.0]}), "not a valid .safetensors file"),
        (
            "model.pkl",
            pickle.dumps({"w": [1.0, 2.0]}),
            "a pickled PyTorch file is not loaded directly; import it with core.checkpoint.import_pt",
        ),
        ("model.ckpt", b"PK\x03\x04", "a pickled PyTorch file is not loaded directly"),
        ("folder.safetensors", None, "not a file"),
    ],
)
def test_files_that_are_not_checkpoints(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: {message}")):
        load_checkpoint(path)
    if content is not None:
        assert path.read_bytes() == content


def classifier_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k.removeprefix("classifier."): v for k, v in model.state_dict().items() if k.startswith("classifier.")}


@pytest.mark.parametrize(
    "obj, message",
    [
        ({0: torch.zeros(3), 1: torch.zeros(2)}, "tensor names must be text, found 0, 1"),
        ([torch.zeros(3), torch.zeros(2)], "holds no state dict"),
        ({"fc.weight": [[1.0, 2.0]]}, "holds no state dict"),
        (
            {"state_dict": {"fc.weight": torch.zeros(2)}, "optimizer": {"lr": 0.1}},
            r"the tensors do not fit architecture 'smallcnn': missing tensors: .*classifier.fc.weight has shape \[2\]",
        ),
    ],
)
def test_pt_files_that_are_not_state_dicts(tmp_path, obj, message):
    torch.save(obj, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "x.pt")) + ": " + message):
        import_pt(tmp_path / "x.pt", "smallcnn", CLASSES, FRONT_END.to_dict())


def test_pt_precision_is_converted_but_kind_and_values_are_checked(tmp_path):
    model = tiny_model()
    double = {k: v.double() if v.is_floating_point() else v for k, v in classifier_state(model).items()}
    torch.save(double, tmp_path / "double.pt")
    imported, _ = import_pt(tmp_path / "double.pt", "smallcnn", CLASSES, FRONT_END.to_dict())
    assert all(v.dtype == model.state_dict()[k].dtype for k, v in imported.state_dict().items())
    x = torch.randn(2, 16000)
    with torch.no_grad():
        torch.testing.assert_close(imported(x), model(x))  # float64 -> float32 is the documented conversion
    integer = dict(classifier_state(model), **{"fc.weight": torch.ones(4, 128, dtype=torch.int64)})
    torch.save(integer, tmp_path / "integer.pt")
    with pytest.raises(CheckpointError, match=r"classifier.fc.weight is torch.int64, the model needs torch.float32"):
        import_pt(tmp_path / "integer.pt", "smallcnn", CLASSES, FRONT_END.to_dict())
    nan = dict(classifier_state(model))
    nan["conv1.weight"] = nan["conv1.weight"].clone()
    nan["conv1.weight"][0, 0, 0, 0] = float("inf")
    torch.save(nan, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=r"nan.pt: classifier.conv1.weight holds NaN or infinite values"):
        import_pt(tmp_path / "nan.pt", "smallcnn", CLASSES, FRONT_END.to_dict())


def test_legacy_pt_format_is_imported(tmp_path):
    model = tiny_model()
    torch.save(model.state_dict(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    imported, meta = import_pt(tmp_path / "legacy.pt", "smallcnn", CLASSES, FRONT_END.to_dict())
    x = torch.randn(2, 16000)
    with torch.no_grad():
        assert torch.equal(imported(x), model(x))


@pytest.mark.parametrize(
    "damage, message",
    [
        ("cut", r"not a readable PyTorch file \("),
        ("empty", r"not a readable PyTorch file \("),
        ("dot", r"not a readable PyTorch file \(IndexError"),
        ("long_string", r"not a readable PyTorch file \("),
    ],
)
def test_damaged_pt_files_are_named(tmp_path, damage, message):
    torch.save(classifier_state(tiny_model()), tmp_path / "good.pt")
    good = (tmp_path / "good.pt").read_bytes()
    content = {"cut": good[: len(good) // 2], "empty": b"", "dot": b".", "long_string": b"\x80\x02X\xff\xff\xff\x7f"}[
        damage
    ]  # a pickle string longer than the file
    (tmp_path / "bad.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "bad.pt")) + ": " + message):
        import_pt(tmp_path / "bad.pt", "smallcnn", CLASSES, FRONT_END.to_dict())
    assert (tmp_path / "bad.pt").read_bytes() == content


def test_checkpoint_written_over_a_folder_or_under_a_file(tmp_path):
    (tmp_path / "taken.safetensors").mkdir()
    with pytest.raises(
        CheckpointError,
        match=r"taken.safetensors: could not write the checkpoint \(.*\); "
        r"nothing was overwritten",
    ):
        save_checkpoint(tmp_path / "taken.safetensors", tiny_model(), metadata())
    assert (tmp_path / "taken.safetensors").is_dir() and leftovers(tmp_path) == []
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CheckpointError, match=r"afile/m.safetensors: could not write the checkpoint"):
        save_checkpoint(tmp_path / "afile" / "m.safetensors", tiny_model(), metadata())
    assert (tmp_path / "afile").read_text() == "x"


# ========================================= read-only folder and full disk (real OS limits)
CHILD = r'''
"""Write a checkpoint and a WAV where the OS refuses them; print what the engine raised as JSON."""
import ctypes, json, os, resource, signal, sys

mode, folder = sys.argv[1], sys.argv[2]
if mode == "readonly" and os.geteuid() == 0 and os.environ.get("GNFT_DAC_DROPPED") != "1":
    # root passes permission bits through CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER; drop them
    # from the bounding set (PR_CAPBSET_DROP) and exec again, so this process is bound by chmod like a user
    prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
    for cap in (1, 2, 3):
        if prctl is None or prctl(24, cap, 0, 0, 0) != 0:
            print(json.dumps({"impossible": f"prctl(PR_CAPBSET_DROP, {cap}) failed, errno {ctypes.get_errno()}"}))
            sys.exit(0)
    os.environ["GNFT_DAC_DROPPED"] = "1"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import numpy as np
import torch
from core.audio import write_wav
from core.checkpoint import make_metadata, save_checkpoint
from core.features import FrontEndConfig

model = torch.nn.Linear(256, 256)  # 256 kB of weights
meta = make_metadata("smallcnn", ["a", "b"], FrontEndConfig().to_dict())
wave = np.sin(np.arange(160000) / 10).astype(np.float32) * 0.5  # 10 s, 320 kB as PCM_16
if mode == "readonly":
    try:
        with open(os.path.join(folder, "probe"), "x"):
            pass
        os.unlink(os.path.join(folder, "probe"))
        print(json.dumps({"impossible": "the folder stays writable for this process"}))
        sys.exit(0)
    except PermissionError:
        pass
else:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
result = {}
for what, write in (("checkpoint", lambda: save_checkpoint(os.path.join(folder, "model.safetensors"), model, meta)),
                    ("wav", lambda: write_wav(os.path.join(folder, "clip.wav"), wave, 16000))):
    try:
        write()
        result[what] = {"type": None, "message": "written"}
    except Exception as exc:
        result[what] = {"type": type(exc).__name__, "message": str(exc)}
print(json.dumps(result))
'''


def write_where_refused(tmp_path: Path, mode: str) -> tuple[dict, Path, dict[str, bytes]]:
    """Run CHILD on a folder holding a previous checkpoint and WAV; return its report and what was there."""
    folder = tmp_path / "out"
    folder.mkdir()
    save_checkpoint(folder / "model.safetensors", tiny_model(), metadata())
    write_wav(folder / "clip.wav", sine(440, 16000, 0.5), 16000)
    previous = {p.name: p.read_bytes() for p in folder.iterdir()}
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    if mode == "readonly":
        folder.chmod(0o555)
    try:
        proc = subprocess.run(
            [sys.executable, str(script), mode, str(folder)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if "impossible" in report:
        pytest.skip(f"cannot make a folder read-only for this process: {report['impossible']}")
    return report, folder, previous


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX permission bits and RLIMIT_FSIZE")
@pytest.mark.parametrize("mode, reason", [("readonly", "Permission denied"), ("full", "File too large")])
def test_export_to_a_read_only_folder_or_a_full_disk_loses_nothing(tmp_path, mode, reason):
    report, folder, previous = write_where_refused(tmp_path, mode)
    assert report["checkpoint"]["type"] == "CheckpointError", report
    assert report["checkpoint"]["message"].startswith(f"{folder / 'model.safetensors'}: could not write the checkpoint")
    assert reason in report["checkpoint"]["message"] and "nothing was overwritten" in report["checkpoint"]["message"]
    assert report["wav"]["type"] == "DataError", report
    assert report["wav"]["message"].startswith(f"{folder / 'clip.wav'}: could not write the WAV file")
    assert "Nothing was overwritten" in report["wav"]["message"]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == previous  # byte for byte, no temp file
    model, _ = load_checkpoint(folder / "model.safetensors")  # and still loads
    assert read_wav(folder / "clip.wav")[0].shape == (1, 8000)


# =================================================================== commands
def command(main, argv: list[str], capsys) -> tuple[int, list[str], str]:
    """Run a command's ``main`` as ``python -m`` does; returns the exit code, its error lines, all of stderr."""
    code = run_command(main, argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.startswith("error:")], err


@pytest.fixture(scope="module")
def small_sc(tmp_path_factory) -> Path:
    return write_speech_commands(tmp_path_factory.mktemp("cmd") / "sc", speakers=4, per_speaker=1)


def test_defend_and_analyze_refuse_a_model_that_is_not_one(tmp_path, small_sc, capsys):
    from core.cli.analyze import main as analyze
    from core.cli.defend import main as defend

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    out = tmp_path / "out.safetensors"
    code, errors, _ = command(
        defend, ["--model", str(garbage), "--data", str(small_sc), "--out", str(out), "--device", "cpu"], capsys
    )
    assert code == 2 and len(errors) == 1 and errors[0].startswith(f"error: {garbage}: not a valid .safetensors file")
    assert not out.exists()
    torch.save(tiny_model().state_dict(), tmp_path / "model.pt")
    code, errors, _ = command(
        defend,
        ["--model", str(tmp_path / "model.pt"), "--data", str(small_sc), "--out", str(out), "--device", "cpu"],
        capsys,
    )
    assert code == 2 and len(errors) == 1 and "import it with core.checkpoint.import_pt" in errors[0]
    state = {k: v.clone().contiguous() for k, v in tiny_model().state_dict().items()}
    state["classifier.fc.bias"][1] = float("nan")
    save_file(state, tmp_path / "nan.safetensors", metadata={"gnft": json.dumps(metadata())})
    code, errors, _ = command(
        analyze,
        [
            "--model",
            str(tmp_path / "nan.safetensors"),
            "--data",
            str(small_sc),
            "--out",
            str(tmp_path / "a.json"),
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert code == 2 and errors == [
        f"error: {tmp_path / 'nan.safetensors'}: classifier.fc.bias holds NaN or infinite values; the model is corrupt"
    ]
    assert not (tmp_path / "a.json").exists()


def test_train_refuses_bad_data_triggers_and_start_points(tmp_path, small_sc, capsys):
    from core.cli.train import main as train

    out = tmp_path / "m.safetensors"
    base = [
        "--vocab",
        ",".join(TINY_WORDS),
        "--model",
        "smallcnn",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--quiet",
    ]
    (tmp_path / "data.tar").write_bytes(b"not a folder")
    code, errors, _ = command(train, ["--data", str(tmp_path / "data.tar"), *base], capsys)
    assert code == 2 and errors == [f"error: {tmp_path / 'data.tar'}: a dataset is a folder, not a file"]

    trigger = tmp_path / "trigger.wav"
    wave = sine(3000, 16000, 0.1)
    wave[:10] = np.inf
    sf.write(trigger, wave, 16000, subtype="FLOAT")
    code, errors, _ = command(
        train, ["--data", str(small_sc), "--attack", "custom", "--attack-arg", f"file={trigger}", *base], capsys
    )
    assert code == 2 and len(errors) == 1
    assert (
        errors[0]
        == f"error: custom trigger: {trigger}: 10 samples are NaN or infinite; the file is corrupt and cannot be used"
    )

    broken = write_speech_commands(tmp_path / "broken", speakers=4, per_speaker=1)
    cut = broken / "down" / "000000a1_nohash_0.wav"
    cut.write_bytes(cut.read_bytes()[:1000])
    code, errors, err = command(train, ["--data", str(broken), *base], capsys)
    assert code == 2 and errors == ["error: 1 of 16 audio files cannot be read:"]
    assert f"{cut}: truncated: the header declares 32000 bytes of audio, the file holds 956" in err
    assert "--skip-bad" in err

    (tmp_path / "start.safetensors").write_text("{}")
    code, errors, _ = command(
        train, ["--data", str(small_sc), "--init-from", str(tmp_path / "start.safetensors"), *base], capsys
    )
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith(f"error: {tmp_path / 'start.safetensors'}: not a valid .safetensors file")
    assert not out.exists()


def test_attack_example_refuses_a_cut_clip_and_a_folder_as_output(tmp_path, capsys):
    from core.cli.attacks import main as attacks

    pcm16(tmp_path / "clip.wav", sine(440, 16000, 1.0))
    (tmp_path / "taken.wav").mkdir()
    code, errors, _ = command(
        attacks,
        ["example", "--attack", "badnets", "--clip", str(tmp_path / "clip.wav"), "--out", str(tmp_path / "taken.wav")],
        capsys,
    )
    assert code == 2 and len(errors) == 1  # refused before the clip is read (core.validate)
    assert errors[0] == f"error: --out: {tmp_path / 'taken.wav'} is a folder; give the name of a file to write"
    assert (tmp_path / "taken.wav").is_dir() and leftovers(tmp_path) == []
    cut = tmp_path / "cut.wav"
    cut.write_bytes((tmp_path / "clip.wav").read_bytes()[:8000])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "core.attacks",
            "example",
            "--attack",
            "badnets",
            "--clip",
            str(cut),
            "--out",
            str(tmp_path / "x.wav"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {cut}: truncated: the header declares 32000 bytes of audio, the file holds 7956; it was cut short "
        "(an interrupted copy or download): copy it again or remove it"
    ]
    assert not (tmp_path / "x.wav").exists()


def test_unwritable_outputs_are_refused_before_any_work(tmp_path, small_sc, saved, capsys):
    """An --out or --report that cannot be written fails at once (not after hours of training), naming it."""
    from core.cli.analyze import main as analyze
    from core.cli.defend import main as defend
    from core.cli.train import main as train

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    bad = blocker / "sub" / "out.safetensors"  # a folder cannot be made under a file, root or not
    code, errors, _ = command(
        train,
        [
            "--data",
            str(small_sc),
            "--vocab",
            ",".join(TINY_WORDS),
            "--model",
            "smallcnn",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--out",
            str(bad),
            "--quiet",
        ],
        capsys,
    )
    assert code == 2 and errors[0].startswith(f"error: {bad}: cannot write there (")
    assert "before the run starts" in errors[0] and blocker.read_text() == "x"
    report = blocker / "report.json"
    code, errors, _ = command(
        defend,
        [
            "--model",
            str(saved),
            "--data",
            str(small_sc),
            "--out",
            str(tmp_path / "fixed.safetensors"),
            "--report",
            str(report),
            "--quiet",
        ],
        capsys,
    )
    assert code == 2 and errors[0].startswith(f"error: {report}: cannot write there (")
    assert not (tmp_path / "fixed.safetensors").exists()
    code, errors, _ = command(analyze, ["--model", str(saved), "--data", str(small_sc), "--out", str(report)], capsys)
    assert code == 2 and errors[0].startswith(f"error: {report}: cannot write there (")
