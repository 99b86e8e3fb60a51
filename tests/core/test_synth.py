"""The espeak-ng corpus generator: real synthesis through ctypes, real WAV files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.cli.synth import main
from core.data import synth as synth_module
from core.data.synth import (
    NOISE_FILES,
    VARIANTS,
    VOCABULARIES,
    SpeakerConfig,
    SynthesisError,
    Synthesizer,
    assign_splits,
    coloured_noise,
    generate_corpus,
    sample_speakers,
)
from core.errors import ConfigError, DataError
from core.runtime import cpu_model

REPO = Path(__file__).resolve().parents[2]
WORDS = ["yes", "no", "up"]
NAME_RE = re.compile(r"^[0-9a-f]{8}_nohash_[0-9]+\.wav$")


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    return Synthesizer()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    generate_corpus(out, WORDS, speakers=8, clips_per_speaker=2, seed=3, progress=False)
    return out


def _f0(wave: np.ndarray, sample_rate: int) -> float:
    """Median pitch (Hz) of the voiced frames, by the normalised difference function (YIN)."""
    wave = wave.astype(np.float64)
    n, max_lag = int(0.03 * sample_rate), int(sample_rate / 60)
    taus = np.arange(1, max_lag)
    found = []
    for start in range(0, wave.size - n - max_lag, n // 2):
        frame = wave[start : start + n + max_lag]
        if np.sqrt(np.mean(frame[:n] ** 2)) < 0.1 * np.abs(wave).max():
            continue
        diff = np.array([np.sum((frame[:n] - frame[t : t + n]) ** 2) for t in taus])
        norm = diff * taus / np.cumsum(diff)
        low = int(sample_rate / 450)
        below = np.flatnonzero(norm[low:] < 0.15)
        if below.size:
            t = low + below[0]
            while t + 1 < norm.size and norm[t + 1] < norm[t]:
                t += 1
            found.append(sample_rate / taus[t])
    assert found, "no voiced frame found"
    return float(np.median(found))


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "synth_info.json"
    }


# ----- the synthesizer -------------------------------------------------------------------


def test_vocabularies_match_the_speech_commands_loader():
    from core.data.speech_commands import VOCABULARIES as LOADER_VOCABULARIES

    assert VOCABULARIES is LOADER_VOCABULARIES  # one list: generator classes = loader classes
    assert VOCABULARIES["scd10"][2] == "up" and VOCABULARIES["scd30"][2] == "cat"
    assert len(VOCABULARIES["scd30"]) == 30 and len(set(VOCABULARIES["scd30"])) == 30


def test_bundled_data_has_the_curated_voices(synth):
    assert synth.sample_rate == 22050
    assert synth.deterministic, "espeak-ng state reset unavailable: corpora would not be reproducible"
    assert {"en-us", "en-gb", "en-gb-scotland", "en-029"} <= set(synth.voices())
    assert "en-shaw" not in synth.voices()
    assert len(synth.variants()) >= 40
    assert set(synth.variants()) <= set(synth.all_variants())
    assert "whisper" not in synth.variants() and "whisper" in synth.all_variants()


def test_word_is_audible_and_of_plausible_length(synth):
    wave, rate = synth.synthesize("seven", "en-us", "m3")
    assert wave.dtype == np.float32 and rate == 22050
    assert np.isfinite(wave).all()
    assert 0.25 < wave.size / rate < 1.0
    assert np.sqrt(np.mean(wave**2)) > 0.02
    assert np.abs(wave).max() <= 1.0
    # trimmed: the word starts and ends within a few ms of the edges
    edge = int(0.01 * rate)
    assert np.abs(wave[:edge]).max() > 0 and np.abs(wave[-edge:]).max() > 0


def test_faster_rate_is_shorter_and_higher_pitch_is_higher(synth):
    slow, rate = synth.synthesize("seven", "en-us", "m3", rate=120)
    fast, _ = synth.synthesize("seven", "en-us", "m3", rate=240)
    assert fast.size < 0.75 * slow.size
    low, _ = synth.synthesize("no", "en-us", "m3", pitch=30)
    high, _ = synth.synthesize("no", "en-us", "m3", pitch=70)
    assert _f0(high, rate) > 1.2 * _f0(low, rate)
    male, _ = synth.synthesize("no", "en-us", "m3")
    female, _ = synth.synthesize("no", "en-us", "f3")
    assert _f0(female, rate) > 1.5 * _f0(male, rate)


def test_voices_and_variants_sound_different(synth):
    waves = {
        (voice, variant): synth.synthesize("the cat caught a hot dog in the water", voice, variant)[0]
        for voice in ("en-us", "en-gb-scotland", "en-029")
        for variant in ("m1", "f2", "adam")
    }
    keys = list(waves)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            assert not (waves[a].size == waves[b].size and np.array_equal(waves[a], waves[b])), (a, b)


def test_same_seed_same_samples_whatever_was_said_before(synth):
    first, _ = synth.synthesize("happy", "en-gb-scotland", "f3", 160, 55, 60, seed=11)
    for variant in ("m1", "klatt", "whisper", "f5"):  # flutter, Klatt, breath and echo state
        synth.synthesize("marvin", "en-us", variant, 200, 20, 90, seed=5)
    again, _ = synth.synthesize("happy", "en-gb-scotland", "f3", 160, 55, 60, seed=11)
    assert np.array_equal(first, again)
    other, _ = synth.synthesize("happy", "en-gb-scotland", "f3", 160, 55, 60, seed=12)
    assert not (other.size == first.size and np.array_equal(other, first))


def test_bad_synthesis_requests_are_clear_errors(synth):
    with pytest.raises(SynthesisError, match="unknown voice variant"):
        synth.synthesize("yes", "en-us", "no-such-variant")
    with pytest.raises(SynthesisError, match="unknown voice"):
        synth.synthesize("yes", "xx-nowhere")
    with pytest.raises(SynthesisError, match="80-450"):
        synth.synthesize("yes", rate=20)
    with pytest.raises(SynthesisError, match="empty"):
        synth.synthesize("   ")
    assert issubclass(SynthesisError, DataError)


def test_noise_colours_have_their_spectral_slopes():
    rng = np.random.default_rng(0)
    slopes = {}
    for colour in ("white", "pink", "brown"):
        noise = coloured_noise(2**16, colour, rng)
        assert noise.shape == (2**16,) and abs(np.sqrt(np.mean(noise**2)) - 1) < 1e-9
        power = np.abs(np.fft.rfft(noise)) ** 2
        freqs = np.arange(power.size)
        band = (freqs > 30) & (freqs < 20000)
        slopes[colour] = np.polyfit(np.log(freqs[band]), np.log(power[band]), 1)[0]
    assert abs(slopes["white"]) < 0.1
    assert abs(slopes["pink"] + 1) < 0.1
    assert abs(slopes["brown"] + 2) < 0.1
    with pytest.raises(ConfigError):
        coloured_noise(10, "purple", rng)


# ----- speakers and splits ---------------------------------------------------------------


def test_speakers_are_distinct_stable_and_gender_balanced(synth):
    speakers = sample_speakers(200, 7, synth.voices(), synth.variants())
    ids = [s.speaker_id for s in speakers]
    assert len(set(ids)) == 200 and all(re.fullmatch(r"[0-9a-f]{8}", i) for i in ids)
    assert sample_speakers(200, 7, synth.voices(), synth.variants()) == speakers
    assert sample_speakers(200, 8, synth.voices(), synth.variants()) != speakers
    females = sum(s.gender == "female" for s in speakers)
    assert 70 <= females <= 130
    assert len({s.accent for s in speakers}) == len(synth.voices())
    # the id is a function of the configuration only
    s = speakers[0]
    assert SpeakerConfig(**s.as_dict()).speaker_id == s.speaker_id
    with pytest.raises(ConfigError, match="only"):
        sample_speakers(10**7, 0, synth.voices(), synth.variants())


def test_splits_hold_out_whole_voice_families(synth):
    speakers = sample_speakers(300, 1, synth.voices(), synth.variants())
    split_of, rule = assign_splits(speakers, seed=1)
    assert rule == "family"
    families = {
        name: {s.family for s in speakers if split_of[s.speaker_id] == name} for name in ("train", "validation", "test")
    }
    assert not families["train"] & families["test"]
    assert not families["train"] & families["validation"]
    assert not families["validation"] & families["test"]
    counts = {name: sum(v == name for v in split_of.values()) for name in ("train", "validation", "test")}
    assert 20 <= counts["test"] <= 45 and 20 <= counts["validation"] <= 45
    genders = {s.gender for s in speakers if split_of[s.speaker_id] == "test"}
    assert genders == {"male", "female"}
    # tiny sets still get a test speaker, and never lose all training speakers
    few = speakers[:3]
    split_few, rule_few = assign_splits(few, seed=1)
    assert rule_few == "speaker"
    assert sorted(split_few.values()) == ["test", "train", "validation"]


# ----- the corpus ------------------------------------------------------------------------


def test_corpus_layout(corpus):
    info = json.loads((corpus / "synth_info.json").read_text())
    speakers = json.loads((corpus / "speakers.json").read_text())
    assert sorted(p.name for p in corpus.iterdir() if p.is_dir()) == sorted(WORDS + ["_background_noise_"])
    all_files = set()
    for word in WORDS:
        names = sorted(p.name for p in (corpus / word).iterdir())
        assert names and all(NAME_RE.match(n) for n in names), names[:3]
        assert {n.split("_nohash_")[0] for n in names} == set(speakers)
        all_files |= {f"{word}/{n}" for n in names}
    validation = (corpus / "validation_list.txt").read_text().splitlines()
    testing = (corpus / "testing_list.txt").read_text().splitlines()
    assert validation and testing
    assert set(validation) <= all_files and set(testing) <= all_files
    assert not set(validation) & set(testing)

    def speakers_of(paths):
        return {Path(p).name.split("_nohash_")[0] for p in paths}

    val_speakers, test_speakers = speakers_of(validation), speakers_of(testing)
    train_speakers = set(speakers) - val_speakers - test_speakers
    assert train_speakers and not val_speakers & test_speakers
    # a listed speaker has all of their clips in that list; training speakers in neither
    assert {p for p in all_files if speakers_of([p]) <= val_speakers} == set(validation)
    assert {p for p in all_files if speakers_of([p]) <= test_speakers} == set(testing)
    assert not speakers_of(validation + testing) & train_speakers
    for sid, config in speakers.items():
        expected = "validation" if sid in val_speakers else "test" if sid in test_speakers else "train"
        assert config["split"] == expected
        assert config["variant"] in VARIANTS and config["accent"].startswith("en")
        assert SpeakerConfig(**{k: config[k] for k in SpeakerConfig.__dataclass_fields__}).speaker_id == sid
    assert info["speakers_per_split"] == {
        "train": len(train_speakers),
        "validation": len(val_speakers),
        "test": len(test_speakers),
    }


def test_background_noise_files(corpus):
    info = json.loads((corpus / "synth_info.json").read_text())
    folder = corpus / "_background_noise_"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.wav" for n in NOISE_FILES)
    for name, meta in info["background_noise"].items():
        data, rate = sf.read(folder / name, dtype="float32")
        assert rate == 16000 and data.ndim == 1
        assert data.shape[0] == round(meta["seconds"] * 16000)
        assert 10 <= meta["seconds"] <= 30
        assert np.isfinite(data).all() and 0.05 < np.sqrt(np.mean(data**2)) < 0.2


def test_every_clip_is_one_second_16k_mono_and_audible(corpus):
    clips = sorted(p for w in WORDS for p in (corpus / w).glob("*.wav"))
    for path in clips:
        meta = sf.info(path)
        assert (meta.samplerate, meta.channels, meta.frames, meta.subtype) == (16000, 1, 16000, "PCM_16"), path
        data, _ = sf.read(path, dtype="float32")
        assert np.isfinite(data).all()
        assert 0.1 < np.abs(data).max() <= 1.0, path
        # the word stands out of the noise floor: loudest 100 ms vs quietest 100 ms
        energy = np.convolve(data.astype(np.float64) ** 2, np.ones(1600), "valid")
        assert energy.max() > 30 * energy.min(), path
    onsets = [np.argmax(np.abs(sf.read(p, dtype="float32")[0]) > 0.05) for p in clips]
    assert np.std(onsets) > 1000, "onsets should be spread over the clip"


def test_synth_info_counts_match_the_files(corpus):
    info = json.loads((corpus / "synth_info.json").read_text())
    counts = {w: len(list((corpus / w).glob("*.wav"))) for w in WORDS}
    assert info["clips_per_word"] == counts
    assert info["clips"] == sum(counts.values()) == 8 * 2 * len(WORDS)
    assert info["speakers"] == 8 and info["clips_per_speaker"] == 2
    assert info["words"] == WORDS and info["vocabulary"] == "custom" and info["seed"] == 3
    listed = {
        "validation": len((corpus / "validation_list.txt").read_text().splitlines()),
        "test": len((corpus / "testing_list.txt").read_text().splitlines()),
    }
    assert info["clips_per_split"] == {"train": info["clips"] - sum(listed.values()), **listed}
    assert info["deterministic"] is True and info["generator_version"] == synth_module.GENERATOR_VERSION
    assert info["clips_per_second"] > 0 and info["seconds"] > 0
    assert info["libraries"]["espeakng-loader"] != "not installed"
    # the CPU model is recorded: MKL's kernels can change a corpus's last bits from one CPU model to another
    assert info["cpu"] == cpu_model() and info["cpu"]
    # the digest covers every file but the info itself: recomputed it matches, one changed byte does not
    assert info["content_sha256"] == synth_module.corpus_digest(corpus)
    clip = next((corpus / WORDS[0]).glob("*.wav"))
    original = clip.read_bytes()
    try:
        clip.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        assert synth_module.corpus_digest(corpus) != info["content_sha256"]
    finally:
        clip.write_bytes(original)


def test_the_project_loader_reads_the_corpus(corpus):
    from core.data.speech_commands import load_speech_commands

    data = load_speech_commands(corpus, WORDS, use_cache=False)
    assert data.classes == WORDS and tuple(data.waves.shape) == (48, 16000)
    split_speakers = {name: {data.speakers[i] for i in idx.tolist()} for name, idx in data.splits.items()}
    assert not split_speakers["train"] & split_speakers["test"]
    assert not split_speakers["train"] & split_speakers["validation"]


def test_same_seed_gives_identical_bytes_and_clips_do_not_depend_on_the_rest(corpus, tmp_path):
    again = tmp_path / "again"
    generate_corpus(again, WORDS, speakers=8, clips_per_speaker=2, seed=3, progress=False)
    assert _files(again) == _files(corpus)
    digest = lambda root: json.loads((root / "synth_info.json").read_text())["content_sha256"]  # noqa: E731
    assert digest(again) == digest(corpus)
    # one word alone: its clips are the same bytes as in the full corpus
    alone = tmp_path / "alone"
    generate_corpus(alone, ["no"], speakers=8, clips_per_speaker=2, seed=3, progress=False)
    alone_clips = {k: v for k, v in _files(alone).items() if k.startswith("no/")}
    assert alone_clips == {k: v for k, v in _files(corpus).items() if k.startswith("no/")}
    other = tmp_path / "other"
    generate_corpus(other, ["no"], speakers=8, clips_per_speaker=2, seed=4, progress=False)
    assert _files(other)["speakers.json"] != _files(alone)["speakers.json"]
    assert not set(_files(other).items()) & {(k, v) for k, v in alone_clips.items()}


def test_custom_words_clips_per_word_and_output_folder_rules(tmp_path, capsys):
    out = tmp_path / "custom"
    assert main(["--words", "maybe, later", "--clips-per-word", "5", "--out", str(out), "--no-progress"]) == 0
    info = json.loads((out / "synth_info.json").read_text())
    assert info["words"] == ["maybe", "later"] and info["vocabulary"] == "custom"
    assert info["speakers"] == 3 and info["clips_per_word"] == {"maybe": 6, "later": 6}
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["_background_noise_", "later", "maybe"]
    assert "12 clips" in capsys.readouterr().out
    # an existing corpus is kept unless --overwrite; then it is replaced whole
    with pytest.raises(DataError, match="not empty"):
        main(["--words", "yes", "--speakers", "2", "--out", str(out)])
    assert (
        main(
            [
                "--words",
                "yes",
                "--speakers",
                "2",
                "--clips-per-speaker",
                "1",
                "--out",
                str(out),
                "--overwrite",
                "--no-progress",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["_background_noise_", "yes"]
    assert not list(tmp_path.glob(".custom.*")), "staging folders must not be left behind"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="refusing"):
        main(["--words", "yes", "--speakers", "2", "--out", str(foreign), "--overwrite"])
    assert (foreign / "notes.txt").read_text() == "mine"
    for bad, message in (
        (["--words", " , "], "empty"),
        (["--words", "a/b"], "cannot use"),
        (["--words", "go,go"], "repeats"),
    ):
        with pytest.raises(ConfigError, match=message):
            main([*bad, "--out", str(tmp_path / "bad")])
    with pytest.raises(ConfigError, match="at most two"):
        main(["--speakers", "2", "--clips-per-speaker", "1", "--clips-per-word", "4", "--out", str(tmp_path / "bad")])


def test_cli_rejects_an_unknown_vocabulary_with_one_line(tmp_path):
    out = tmp_path / "never"
    result = subprocess.run(
        [sys.executable, "-m", "core.data.synth", "--vocab", "scd99", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "scd99" in lines[0] and "scd10" in lines[0], result.stderr
    assert not out.exists()
