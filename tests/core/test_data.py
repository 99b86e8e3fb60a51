"""Dataset loaders on small generated folders (real WAVs) and on FSDD when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.data import detect_format, load_dataset
from core.data.audioset import AudioSet
from core.data.fsdd import load_fsdd
from core.data.speech_commands import (
    VOCABULARIES,
    load_background_noise,
    load_speech_commands,
    resolve_vocabulary,
    which_set,
)
from core.errors import DataError
from tests.conftest import TINY_WORDS, write_speech_commands


def test_speech_commands_with_lists(tiny_sc):
    data = load_speech_commands(tiny_sc, TINY_WORDS)
    assert data.classes == TINY_WORDS
    assert data.waves.shape == (4 * 10 * 2, 16000) and data.waves.dtype == torch.float32
    assert {k: int(v.numel()) for k, v in data.splits.items()} == {"train": 64, "validation": 8, "test": 8}
    test_speakers = {data.speakers[i] for i in data.splits["test"].tolist()}
    train_speakers = {data.speakers[i] for i in data.splits["train"].tolist()}
    assert test_speakers == {"000000a1"} and not test_speakers & train_speakers
    # labels follow the folder of each file
    for i in (0, 25, 79):
        assert Path(data.files[i]).parent.name == data.classes[int(data.labels[i])]
    assert data.source["split_rule"] == "lists"


def test_speech_commands_hash_rule_without_lists(tmp_path):
    root = write_speech_commands(tmp_path / "sc", speakers=30, per_speaker=1, lists=False)
    data = load_speech_commands(root, TINY_WORDS)
    assert data.source["split_rule"] == "hash"
    for i, f in enumerate(data.files):
        split = next(k for k, v in data.splits.items() if i in set(v.tolist()))
        assert split == which_set(f)
    # a speaker never straddles two splits
    for spk in set(data.speakers):
        rows = [i for i, s in enumerate(data.speakers) if s == spk]
        assert len({which_set(data.files[i]) for i in rows}) == 1


def test_which_set_is_the_dataset_rule():
    # same speaker, different utterance: same split; the rule ignores the word folder
    assert which_set("yes/0a7c2a8d_nohash_0.wav") == which_set("no/0a7c2a8d_nohash_3.wav")
    names = [f"w/{i:08x}_nohash_0.wav" for i in range(2000)]
    share = {s: sum(which_set(n) == s for n in names) / len(names) for s in ("train", "validation", "test")}
    assert 0.07 < share["validation"] < 0.13 and 0.07 < share["test"] < 0.13


def test_vocabularies():
    assert resolve_vocabulary("scd10")[2] == "up" and len(VOCABULARIES["scd10"]) == 10
    assert resolve_vocabulary("SCD30")[2] == "cat" and len(resolve_vocabulary("scd30")) == 30
    assert resolve_vocabulary("a, b,c") == ["a", "b", "c"]
    with pytest.raises(DataError, match="empty vocabulary"):
        resolve_vocabulary(" , ")
    with pytest.raises(DataError, match="repeats"):
        resolve_vocabulary(["a", "a"])


def test_missing_word_is_named(tiny_sc):
    with pytest.raises(DataError, match=r"no folder for the word\(s\) left, right"):
        load_speech_commands(tiny_sc, ["yes", "left", "right"])


def test_corrupt_clip_is_named_or_skipped(tmp_path):
    root = write_speech_commands(tmp_path / "sc", speakers=4, per_speaker=1)
    (root / "yes" / "000000a3_nohash_0.wav").write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(DataError, match=r"1 of 16 audio files cannot be read:\n.*000000a3_nohash_0.wav"):
        load_speech_commands(root, TINY_WORDS)
    data = load_speech_commands(root, TINY_WORDS, skip_bad=True)
    assert len(data) == 15 and len(data.source["skipped"]) == 1


def test_stray_files_and_missing_lists_are_tolerated(tmp_path):
    root = write_speech_commands(tmp_path / "sc", speakers=40, per_speaker=1, lists=False)
    (root / "README.txt").write_text("not audio")
    (root / "yes" / "notes.txt").write_text("stray")
    data = load_speech_commands(root, TINY_WORDS)
    assert len(data) == 160


def test_background_noise(tiny_sc):
    noise = load_background_noise(tiny_sc)
    assert len(noise) == 1 and noise[0].shape == (32000,)


def test_cache_hit_and_invalidation(tmp_path):
    root = write_speech_commands(tmp_path / "sc", speakers=3, per_speaker=1)
    first = load_speech_commands(root, TINY_WORDS)
    again = load_speech_commands(root, TINY_WORDS)
    assert torch.equal(first.waves, again.waves) and first.splits.keys() == again.splits.keys()
    # changing a file changes the key: the new content is read
    import soundfile as sf

    target = root / "up" / "000000a2_nohash_0.wav"
    sf.write(target, np.full(16000, 0.25, np.float32), 16000)
    changed = load_speech_commands(root, TINY_WORDS)
    row = changed.files.index(str(target))
    assert torch.allclose(changed.waves[row], torch.full((16000,), 0.25), atol=1e-4)


def test_detect_format(tiny_sc, tiny_fsdd, tmp_path):
    assert detect_format(tiny_sc) == "speech-commands"
    assert detect_format(tiny_fsdd) == "fsdd"
    assert detect_format(tiny_fsdd.parent) == "fsdd"  # the folder above recordings/
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither a Speech Commands folder"):
        detect_format(tmp_path / "empty")
    with pytest.raises(DataError, match="no such dataset folder"):
        detect_format(tmp_path / "missing")


def test_fsdd_generated_official_and_speaker_splits(tiny_fsdd):
    data = load_fsdd(tiny_fsdd)
    assert data.classes[0] == "zero" and data.sample_rate == 16000 and data.num_samples == 16000
    idx = {k: v.tolist() for k, v in data.splits.items()}
    index_of = [int(Path(f).stem.split("_")[2]) for f in data.files]
    assert all(index_of[i] < 5 for i in idx["test"]) and all(5 <= index_of[i] < 10 for i in idx["validation"])
    assert all(index_of[i] >= 10 for i in idx["train"])
    spk = load_fsdd(tiny_fsdd, "speaker", test_speakers=["bob"])
    assert {spk.speakers[i] for i in spk.splits["test"].tolist()} == {"bob"}
    assert "bob" not in {spk.speakers[i] for i in spk.splits["train"].tolist()}
    with pytest.raises(DataError, match="test speaker"):
        load_fsdd(tiny_fsdd, "speaker", test_speakers=["zed"])


def test_fsdd_real_official_split(fsdd_path):
    data = load_dataset(fsdd_path)
    assert len(data) == 3000 and data.source["format"] == "fsdd"
    assert {k: int(v.numel()) for k, v in data.splits.items()} == {"train": 2400, "validation": 300, "test": 300}
    assert set(torch.bincount(data.labels[data.splits["test"]]).tolist()) == {30}
    assert (
        torch.isfinite(data.waves).all() and float(data.waves.abs().max()) < 1.1
    )  # resampling may overshoot full scale slightly
    # every clip has speech in it after pad/crop (no all-silent rows)
    assert float(data.waves.abs().amax(dim=1).min()) > 0.01


def test_fsdd_real_speaker_split(fsdd_path):
    data = load_dataset(fsdd_path, fsdd_split="speaker", test_speakers=["theo", "lucas"])
    test_spk = {data.speakers[i] for i in data.splits["test"].tolist()}
    assert test_spk == {"theo", "lucas"} and int(data.splits["test"].numel()) == 1000


def test_audioset_validates_shapes():
    with pytest.raises(DataError, match="labels must be"):
        AudioSet(torch.zeros(3, 10), torch.zeros(2, dtype=torch.int64), ["a"] * 3, ["x"], 16000, {})
    with pytest.raises(DataError, match="labels must lie"):
        AudioSet(torch.zeros(2, 10), torch.tensor([0, 5]), ["a"] * 2, ["x", "y"], 16000, {})
