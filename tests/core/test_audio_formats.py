"""Any audio format soundfile reads (issue 31): FLAC, OGG/Vorbis, AIFF and WAV clips written for real,
recognised by content, in Speech Commands and FSDD folders; speaker ids; the asc10/asc30 vocabularies;
and the real Arabic Speech Commands (skipped when ../shared/data/arabic_sc is absent)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.audio import AUDIO_SUFFIXES, audio_files, is_audio_file, load_clip, read_audio
from core.cli.attacks import main as attacks_main
from core.data import detect_format, load_dataset
from core.data.fsdd import load_fsdd
from core.data.speech_commands import (
    ASC10,
    ASC30,
    VOCABULARIES,
    default_vocabulary,
    is_speech_commands,
    load_speech_commands,
    resolve_vocabulary,
    speaker_of,
    which_set,
    word_folders,
)
from core.errors import DataError
from tests.conftest import tone_clip

RATE = 16000
#: (suffix, soundfile format, subtype, largest sample error against the float original)
FORMATS = [
    (".wav", "WAV", "PCM_16", 1e-4),
    (".flac", "FLAC", "PCM_16", 1e-4),
    (".ogg", "OGG", "VORBIS", 0.05),  # lossy
    (".aiff", "AIFF", "PCM_16", 1e-4),
]


def sine(freq: float = 440.0, rate: int = RATE, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path: Path, wave: np.ndarray, fmt: str, subtype: str, rate: int = RATE) -> Path:
    """A real audio file of ``fmt`` at ``path`` (whatever its suffix says)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # a file object: soundfile takes the format given, not the name's
        sf.write(f, wave, rate, format=fmt, subtype=subtype)
    return path


@pytest.mark.parametrize(("suffix", "fmt", "subtype", "tol"), FORMATS)
def test_each_format_reads_and_loads_as_a_clip(tmp_path, suffix, fmt, subtype, tol):
    wave = sine()
    path = write(tmp_path / f"clip{suffix}", wave, fmt, subtype)
    assert sf.info(str(path)).format == fmt
    data, rate = read_audio(path)
    assert rate == RATE and data.shape == (1, RATE) and data.dtype == np.float32
    assert np.abs(data[0] - wave).max() < tol
    clip = load_clip(path, 8000, 8000)  # resampled to 8 kHz, one second
    assert clip.shape == (8000,) and np.isfinite(clip).all() and 0.3 < np.abs(clip).max() < 0.7
    assert is_audio_file(path) and suffix in AUDIO_SUFFIXES


@pytest.mark.parametrize(
    ("name", "fmt", "subtype"),
    [
        ("flac_bytes.wav", "FLAC", "PCM_16"),
        ("wav_bytes.ogg", "WAV", "PCM_16"),
        ("ogg_bytes.aiff", "OGG", "VORBIS"),
        ("aiff_bytes.flac", "AIFF", "PCM_16"),
        ("no_suffix", "FLAC", "PCM_16"),
        ("odd.bin", "AIFF", "PCM_24"),
    ],
)
def test_a_suffix_that_lies_is_read_by_content(tmp_path, name, fmt, subtype):
    wave = sine(330)
    path = write(tmp_path / name, wave, fmt, subtype)
    assert sf.info(str(path)).format == fmt  # the file really is what we say, whatever its name
    data, rate = read_audio(path)
    assert rate == RATE and np.abs(data[0] - wave).max() < (0.05 if fmt == "OGG" else 1e-4)
    assert is_audio_file(path)


def test_a_folder_lists_audio_by_suffix_or_by_content(tmp_path):
    write(tmp_path / "a.flac", sine(), "FLAC", "PCM_16")
    write(tmp_path / "b.take", sine(), "OGG", "VORBIS")  # unknown suffix, audio inside: listed
    write(tmp_path / "c", sine(), "AIFF", "PCM_16")  # no suffix: listed
    (tmp_path / "broken.wav").write_bytes(b"not audio" * 20)  # an audio name: listed (the reader reports it)
    (tmp_path / "notes").write_text("no audio here\n" * 5)  # no suffix, text inside: not listed
    (tmp_path / "README.md").write_text("# clips\n")
    (tmp_path / "sub.flac").mkdir()  # not opened to look inside
    names = [p.name for p in audio_files(tmp_path)]
    assert names == ["a.flac", "b.take", "broken.wav", "c", "sub.flac"]
    assert not is_audio_file(tmp_path / "notes") and not is_audio_file(tmp_path / "broken.wav")
    assert not is_audio_file(tmp_path / "sub.flac") and not is_audio_file(tmp_path / "missing.flac")


@pytest.mark.parametrize(
    ("name", "content", "hint"),
    [
        ("junk.flac", b"fLaC" + b"\0" * 200, "complete audio file in a format soundfile reads"),
        ("text.ogg", b"this is not audio at all\n" * 20, "complete audio file in a format soundfile reads"),
        ("noise.aiff", bytes(range(256)) * 8, "complete audio file in a format soundfile reads"),
    ],
)
def test_an_unreadable_file_is_a_data_error_naming_it(tmp_path, name, content, hint):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=rf"{name}: not a readable audio file \(.*\); check that it is a {hint}"):
        read_audio(tmp_path / name)
    with pytest.raises(DataError, match=name):
        load_clip(tmp_path / name)


def test_a_broken_wav_keeps_the_wav_diagnostics_whatever_its_name(tmp_path):
    write(tmp_path / "full.wav", sine(), "WAV", "PCM_16")
    raw = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.flac").write_bytes(raw[: len(raw) // 2])  # a WAV cut short, named .flac
    with pytest.raises(DataError, match=r"cut.flac: truncated: the header declares 32000 bytes of audio"):
        read_audio(tmp_path / "cut.flac")


def test_speaker_ids():
    assert speaker_of("yes/0a7c2a8d_nohash_3.wav") == "0a7c2a8d"
    assert speaker_of("00000012_NO_07.flac") == "00000012"  # the Arabic Speech Commands' names
    assert speaker_of("up/alice_take_2.ogg") == "alice"
    assert speaker_of("bob.aiff") == "bob"  # no "_": the whole stem
    assert speaker_of("_odd.wav") == "_odd"  # nothing before the "_": the whole stem
    # the hash rule splits by speaker, so every take of a speaker lands in one split
    assert which_set("yes/00000012_NO_01.flac") == which_set("no/00000012_NO_09.flac")


def test_named_vocabularies_resolve():
    assert (
        resolve_vocabulary("asc10")
        == ASC10
        == [
            "yes",
            "no",
            "up",
            "down",
            "left",
            "right",
            "stop",
            "start",
            "enable",
            "disable",
        ]
    )
    asc30 = resolve_vocabulary("ASC30")
    assert len(asc30) == len(set(asc30)) == 30 and asc30[:10] == ASC10 and asc30[2] == "up"
    assert {"zero", "nine", "open", "undo", "backward"} <= set(asc30) and asc30 == ASC30
    assert set(VOCABULARIES) >= {"scd10", "scd30", "asc10", "asc30"}


def test_default_vocabulary_prefers_scd10_then_asc10(tmp_path):
    for word in ASC30:
        (tmp_path / "asc" / word).mkdir(parents=True)
    assert default_vocabulary(tmp_path / "asc") == "asc10"
    for word in VOCABULARIES["scd10"]:
        (tmp_path / "both" / word).mkdir(parents=True, exist_ok=True)
    for word in ASC10:
        (tmp_path / "both" / word).mkdir(parents=True, exist_ok=True)
    assert default_vocabulary(tmp_path / "both") == "scd10"
    (tmp_path / "few" / "yes").mkdir(parents=True)
    assert default_vocabulary(tmp_path / "few") is None  # every word folder


def mixed_corpus(root: Path, words=("yes", "no", "up"), speakers: int = 6) -> Path:
    """A Speech Commands folder whose clips cycle through WAV, FLAC, OGG and AIFF, half named
    ``<speaker>_nohash_<n>``, half ``<speaker>_NO_<take>`` like the Arabic corpus, with one clip whose
    suffix lies and one without suffix; the lists name the clips of speakers 0 and 1 as they are stored."""
    rng = np.random.default_rng(0)
    val, test = [], []
    k = 0
    for w, word in enumerate(words):
        for s in range(speakers):
            spk = f"{s:08d}"
            for take in range(2):
                suffix, fmt, subtype, _ = FORMATS[k % len(FORMATS)]
                k += 1
                name = f"{spk}_nohash_{take}{suffix}" if s % 2 else f"{spk}_NO_{take + 1:02d}{suffix}"
                write(root / word / name, tone_clip(300 + 250 * w, rng), fmt, subtype)
                (val if s == 0 else test if s == 1 else []).append(f"{word}/{name}")
    # a FLAC named .wav and an OGG without suffix, for speaker 5 (training)
    write(root / "up" / "00000005_NO_07.wav", tone_clip(800, rng), "FLAC", "PCM_16")
    write(root / "up" / "00000005_NO_08", tone_clip(800, rng), "OGG", "VORBIS")
    (root / "up" / "notes.txt").write_text("recorded in a quiet room\n")
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    return root


def test_a_speech_commands_folder_mixing_formats(tmp_path):
    root = mixed_corpus(tmp_path / "mixed")
    assert is_speech_commands(root) and detect_format(root) == "speech-commands"
    data = load_dataset(root, use_cache=False)  # no scd10/asc10 here: every word folder, sorted
    assert data.classes == ["no", "up", "yes"]
    assert len(data) == 3 * 6 * 2 + 2
    suffixes = {Path(f).suffix for f in data.files}
    assert suffixes == {".wav", ".flac", ".ogg", ".aiff", ""}
    sizes = {k: int(v.numel()) for k, v in data.splits.items()}
    assert sizes == {"train": 3 * 4 * 2 + 2, "validation": 3 * 2, "test": 3 * 2}
    speakers = {k: {data.speakers[i] for i in v.tolist()} for k, v in data.splits.items()}
    assert speakers == {
        "train": {f"{s:08d}" for s in range(2, 6)},
        "validation": {"00000000"},
        "test": {"00000001"},
    }
    assert np.isfinite(data.waves.numpy()).all() and data.waves.shape[1] == RATE
    # every clip decoded to its word's tone: the label follows the folder whatever the format
    for i, f in enumerate(data.files):
        assert Path(f).parent.name == data.classes[int(data.labels[i])]
    assert data.source["split_rule"] == "lists"


def test_lists_naming_wav_match_a_corpus_converted_to_flac(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "converted"
    for word in ("yes", "no"):
        for s in range(4):
            write(root / word / f"{s:08x}_nohash_0.flac", tone_clip(500, rng), "FLAC", "PCM_16")
    (root / "validation_list.txt").write_text("yes/00000000_nohash_0.wav\nno/00000000_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("yes/00000001_nohash_0.WAV\n")
    data = load_speech_commands(root, ["yes", "no"], use_cache=False)
    names = {
        k: sorted(Path(data.files[i]).parent.name + "/" + Path(data.files[i]).name for i in v.tolist())
        for k, v in data.splits.items()
    }
    assert names["validation"] == ["no/00000000_nohash_0.flac", "yes/00000000_nohash_0.flac"]
    assert names["test"] == ["yes/00000001_nohash_0.flac"] and len(names["train"]) == 5


def test_hash_rule_keeps_first_underscore_speakers_in_one_split(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "nolists"
    for word in ("yes", "no"):
        for s in range(40):
            for take in (1, 2):
                write(root / word / f"{s:08d}_NO_{take:02d}.flac", tone_clip(400, rng, seconds=0.1), "FLAC", "PCM_16")
    data = load_speech_commands(root, ["yes", "no"], num_samples=1600, use_cache=False, require_splits=False)
    assert data.source["split_rule"] == "hash" and len(set(data.speakers)) == 40
    split_of = {}
    for name, idx in data.splits.items():
        for i in idx.tolist():
            assert split_of.setdefault(data.speakers[i], name) == name  # a speaker never straddles splits
    assert {"train"} < set(split_of.values())  # more than one split is used


def test_an_unreadable_flac_in_a_word_folder_is_named_or_skipped(tmp_path):
    root = mixed_corpus(tmp_path / "bad")
    victim = next(p for p in audio_files(root / "no") if p.suffix == ".flac")
    victim.write_bytes(b"fLaC" + b"\1" * 64)  # a FLAC header and nothing a decoder can use
    with pytest.raises(DataError, match=rf"{victim.name}: not a readable audio file"):
        load_speech_commands(root, ["yes", "no", "up"], use_cache=False)
    data = load_speech_commands(root, ["yes", "no", "up"], skip_bad=True, use_cache=False)
    assert len(data) == 3 * 6 * 2 + 2 - 1 and str(victim) not in data.files


def test_fsdd_in_flac_ogg_and_aiff(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "recordings"
    for digit in range(10):
        for spk in ("alice", "bob"):
            for idx in range(12):
                suffix, fmt, subtype, _ = FORMATS[(digit + idx) % len(FORMATS)]
                write(
                    root / f"{digit}_{spk}_{idx}{suffix}",
                    tone_clip(200 + 150 * digit, rng, 8000, 0.5),
                    fmt,
                    subtype,
                    8000,
                )
    write(root / "7_bob_12.wav", tone_clip(500, rng, 8000, 0.5), "FLAC", "PCM_16", 8000)  # FLAC bytes, .wav name
    assert detect_format(tmp_path) == "fsdd"
    data = load_fsdd(tmp_path, "speaker", test_speakers=["bob"], use_cache=False)
    assert len(data) == 10 * 2 * 12 + 1 and {Path(f).suffix for f in data.files} == {".wav", ".flac", ".ogg", ".aiff"}
    test_speakers = {data.speakers[i] for i in data.splits["test"].tolist()}
    train_speakers = {data.speakers[i] for i in data.splits["train"].tolist()}
    assert test_speakers == {"bob"} and train_speakers == {"alice"}


def test_attacks_example_takes_any_format(tmp_path, capsys):
    write(tmp_path / "clip.wav", sine(300), "OGG", "VORBIS")  # OGG bytes named .wav
    write(tmp_path / "clip.aiff", sine(300), "AIFF", "PCM_16")
    for clip in ("clip.wav", "clip.aiff"):
        out = tmp_path / f"triggered_{Path(clip).suffix[1:]}.wav"
        assert attacks_main(["example", "--attack", "badnets", "--clip", str(tmp_path / clip), "--out", str(out)]) == 0
        data, rate = read_audio(out)
        assert rate == RATE and data.shape == (1, RATE) and np.abs(data[0] - sine(300)).max() > 0.01  # a trigger added
    assert "wrote" in capsys.readouterr().out


# ---------------------------------------------------------------------- the real corpus
@pytest.fixture(scope="module")
def asc10(arabic_sc_path):
    """ASC-10 of the real corpus, loaded once with its own lists and the default vocabulary."""
    return load_dataset(arabic_sc_path)


def test_real_corpus_words_are_asc30(arabic_sc_path):
    assert sorted(word_folders(arabic_sc_path)) == sorted(ASC30)
    assert detect_format(arabic_sc_path) == "speech-commands" and default_vocabulary(arabic_sc_path) == "asc10"
    assert {p.suffix for p in audio_files(arabic_sc_path / "up")} == {".flac"}


def test_real_corpus_asc10_splits_are_speaker_disjoint(asc10):
    assert asc10.classes == ASC10 and asc10.source["split_rule"] == "lists"
    sizes = {k: int(v.numel()) for k, v in asc10.splits.items()}
    assert sizes == {"train": 1800, "validation": 600, "test": 600}
    speakers = {k: {asc10.speakers[i] for i in v.tolist()} for k, v in asc10.splits.items()}
    assert {k: len(v) for k, v in speakers.items()} == {"train": 18, "validation": 6, "test": 6}
    assert not (speakers["train"] & speakers["validation"] or speakers["train"] & speakers["test"])
    assert not speakers["validation"] & speakers["test"]
    assert all(len(s) == 8 and s.isdigit() for s in set(asc10.speakers))
    for name, idx in asc10.splits.items():
        counts = np.bincount(asc10.labels[idx].numpy(), minlength=10)
        assert (counts == sizes[name] // 10).all()  # every word equally in every split
    assert asc10.waves.shape == (3000, RATE) and np.isfinite(asc10.waves.numpy()).all()


def test_real_corpus_flac_copied_under_a_wav_name_reads_the_same(arabic_sc_path, tmp_path):
    source = arabic_sc_path / "yes" / "00000001_NO_01.flac"
    shutil.copyfile(source, tmp_path / "same.wav")
    np.testing.assert_array_equal(load_clip(source), load_clip(tmp_path / "same.wav"))
