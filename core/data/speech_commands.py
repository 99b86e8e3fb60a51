"""Speech Commands folder layout (Google v0.01/v0.02, Arabic Speech Commands) and its named vocabularies.

Layout: ``<root>/<word>/<speaker>_nohash_<n>.wav``, optional ``validation_list.txt`` and
``testing_list.txt`` (paths relative to the root), and ``_background_noise_/``. Clips may be in
any format soundfile reads (WAV, FLAC, OGG/Vorbis, AIFF, ...), recognised by content
(:func:`core.audio.audio_files`); a list entry names a clip by its path (``yes/a.flac``), or by
its path with another audio suffix when that file is absent (lists naming ``.wav`` over a
corpus converted to FLAC). The speaker is the part of the name before ``_nohash_``, else before
the first ``_`` (the Arabic Speech Commands name clips ``<8-digit speaker>_NO_<take>.flac``).
When the lists are absent, clips are split by the dataset's own rule: a SHA-1 hash of the
speaker, so that a speaker's clips always fall in one split.

Vocabularies: ``scd10``/``scd30`` (Google Speech Commands) and ``asc10``/``asc30`` (the Arabic
Speech Commands words kept in ``../shared/data/arabic_sc``: Ghandoura et al., 2021, CC BY 4.0).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from core.data.audioset import AudioSet, cached_build, decode_clips, files_key
from core.errors import DataError

__all__ = [
    "VOCABULARIES",
    "default_vocabulary",
    "resolve_vocabulary",
    "speaker_of",
    "which_set",
    "is_speech_commands",
    "load_speech_commands",
    "load_background_noise",
    "word_folders",
]

SCD10 = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
SCD30 = [
    "bed",
    "bird",
    "cat",
    "dog",
    "down",
    "eight",
    "five",
    "four",
    "go",
    "happy",
    "house",
    "left",
    "marvin",
    "nine",
    "no",
    "off",
    "on",
    "one",
    "right",
    "seven",
    "sheila",
    "six",
    "stop",
    "three",
    "tree",
    "two",
    "up",
    "wow",
    "yes",
    "zero",
]
#: The Arabic Speech Commands analogue of SCD-10 (start ~ go, enable ~ on, disable ~ off).
ASC10 = ["yes", "no", "up", "down", "left", "right", "stop", "start", "enable", "disable"]
#: Every word of ``../shared/data/arabic_sc``: ASC-10 first (so class 2 is "up" in both), then the
#: digits, then the rest in the order of the corpus README.
ASC30 = [
    *ASC10,
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    *("open", "close", "forward", "backward", "next", "previous", "cancel", "ok", "send", "undo"),
]
#: Class order matters: the target class index 2 is "up" in SCD-10 and "cat" in SCD-30,
#: as in the authors' code; "up" in ASC-10 and ASC-30.
VOCABULARIES: dict[str, list[str]] = {"scd10": SCD10, "scd30": SCD30, "asc10": ASC10, "asc30": ASC30}
#: Named vocabularies tried in turn when none is given: the first whose words all have folders.
DEFAULT_VOCABULARIES = ("scd10", "asc10")
V2_ONLY_WORDS = {"backward", "follow", "forward", "learn", "visual"}
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1
NOISE_DIR = "_background_noise_"


def default_vocabulary(root: str | Path) -> str | None:
    """``scd10``, else ``asc10``, when all its words have folders under ``root``; else None (every folder)."""
    root = Path(root)
    return next((name for name in DEFAULT_VOCABULARIES if all((root / w).is_dir() for w in VOCABULARIES[name])), None)


def resolve_vocabulary(vocab: str | Sequence[str] | None, available: Sequence[str] = ()) -> list[str]:
    """Turn ``scd10``/``scd30``/``asc10``/``asc30``, a comma list or a list of words into the class list.

    ``None`` means every word folder found (sorted).
    """
    if vocab is None:
        if not available:
            raise DataError("no word folders found and no vocabulary given")
        return sorted(available)
    if isinstance(vocab, str):
        key = vocab.strip().lower()
        if key in VOCABULARIES:
            return list(VOCABULARIES[key])
        words = [w.strip() for w in vocab.split(",") if w.strip()]
    else:
        words = [str(w).strip() for w in vocab if str(w).strip()]
    if not words:
        raise DataError(f"empty vocabulary {vocab!r}; use {', '.join(VOCABULARIES)} or a comma-separated word list")
    if len(set(words)) != len(words):
        raise DataError(f"vocabulary repeats a word: {words}")
    return words


def speaker_of(filename: str) -> str:
    """The speaker id: the name before ``_nohash_``, else before the first ``_``, else the whole stem."""
    name = Path(filename).name
    if "_nohash_" in name:
        return name.split("_nohash_")[0]
    stem = Path(name).stem
    return stem.split("_", 1)[0] or stem


def which_set(filename: str, validation_percentage: float = 10.0, testing_percentage: float = 10.0) -> str:
    """The Speech Commands split rule: a stable hash of the speaker decides the split."""
    hash_name = speaker_of(filename)
    digest = hashlib.sha1(hash_name.encode("utf-8")).hexdigest()
    percentage = (int(digest, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if percentage < validation_percentage:
        return "validation"
    if percentage < testing_percentage + validation_percentage:
        return "test"
    return "train"


def word_folders(root: Path) -> list[str]:
    """The word sub-folders of a Speech Commands root (not hidden, not ``_background_noise_``)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def is_speech_commands(root: Path) -> bool:
    """True when ``root`` has at least one word folder holding audio files (any format soundfile reads)."""
    from core.audio import iter_audio_files

    root = Path(root)
    if not root.is_dir():
        return False
    return any(next(iter_audio_files(root / d), None) is not None for d in word_folders(root))


def _read_list(path: Path, root: Path) -> set[str]:
    if not path.is_file():
        return set()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: cannot read the split list ({exc}); it should be UTF-8 text with one "
            "<word>/<file> per line (e.g. yes/a.flac). Fix or remove it"
        ) from exc
    entries = set()
    for line in text.splitlines():
        line = line.strip().replace("\\", "/")
        if line:
            entries.add(line)
    return entries


def _clip_key(entry: str) -> str:
    """A clip's path without its audio suffix: ``yes/a.wav`` in a list names ``yes/a.flac`` too.

    One clip kept in two formats thus falls in one split (no copy of a held-out clip in training).
    """
    from core.audio import AUDIO_SUFFIXES

    stem, dot, suffix = entry.rpartition(".")
    return stem if dot and f".{suffix.lower()}" in AUDIO_SUFFIXES else entry


def load_speech_commands(
    root: str | Path,
    vocab: str | Sequence[str] | None = "auto",
    *,
    sample_rate: int = 16000,
    num_samples: int | None = None,
    skip_bad: bool = False,
    use_cache: bool = True,
    max_per_class: int | None = None,
    require_splits: bool = True,
) -> AudioSet:
    """Load the words of ``vocab`` from a Speech Commands folder into an :class:`AudioSet`.

    ``vocab="auto"`` (the default) is :func:`default_vocabulary`: ``scd10``, else ``asc10``, when
    all its words are present, else every word folder (as ``None``).
    Splits come from ``validation_list.txt``/``testing_list.txt`` when present (every other
    clip is training), else from :func:`which_set`. ``max_per_class`` keeps the first N files
    per word (sorted by name) for quick experiments. ``require_splits=False`` accepts a folder
    whose train or test split is empty (auxiliary data that is used whole).
    """
    from core.audio import iter_audio_files

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset folder")
    num_samples = int(num_samples or sample_rate)
    if isinstance(vocab, str) and vocab.strip().lower() == "auto":
        vocab = default_vocabulary(root)
    available = word_folders(root)
    classes = resolve_vocabulary(vocab, available)
    missing = [w for w in classes if not (root / w).is_dir()]
    if missing:
        raise DataError(
            f"{root}: no folder for the word(s) {', '.join(missing)}; "
            f"found: {', '.join(available) or 'none'}. Pick another --vocab or --words."
        )
    files: list[Path] = []
    labels: list[int] = []
    for label, word in enumerate(classes):
        word_files = sorted(iter_audio_files(root / word))
        if max_per_class is not None:
            word_files = word_files[:max_per_class]
        if not word_files:
            raise DataError(
                f"{root / word}: the word folder holds no audio files (WAV, FLAC, OGG/Vorbis, AIFF or another "
                "format soundfile reads)"
            )
        files += word_files
        labels += [label] * len(word_files)

    val_list = _read_list(root / "validation_list.txt", root)
    test_list = _read_list(root / "testing_list.txt", root)
    split_rule = "lists" if (val_list or test_list) else "hash"
    version = "v0.02" if any((root / w).is_dir() for w in V2_ONLY_WORDS) else "v0.01"
    settings = {
        "loader": "speech_commands",
        "root": str(root.resolve()),
        "classes": classes,
        "sample_rate": sample_rate,
        "num_samples": num_samples,
        "skip_bad": skip_bad,
        "split_rule": split_rule,
        "speaker_rule": "nohash-or-first-underscore",  # a new rule must not reuse an older cache
        "lists": hashlib.sha1(("\n".join(sorted(val_list)) + "\0" + "\n".join(sorted(test_list))).encode()).hexdigest(),
    }

    def build() -> AudioSet:
        waves, kept, errors = decode_clips(files, sample_rate, num_samples, skip_bad=skip_bad)
        kept_files = [files[i] for i in kept]
        rel = [f"{f.parent.name}/{f.name}" for f in kept_files]
        split_of = []
        val_keys, test_keys = {_clip_key(e) for e in val_list}, {_clip_key(e) for e in test_list}
        for r in rel:
            if split_rule == "lists":
                key = _clip_key(r)
                split_of.append("validation" if key in val_keys else "test" if key in test_keys else "train")
            else:
                split_of.append(which_set(r))
        splits = {
            name: torch.tensor([i for i, s in enumerate(split_of) if s == name], dtype=torch.int64)
            for name in ("train", "validation", "test")
        }
        return AudioSet(
            waves=torch.from_numpy(waves),
            labels=torch.tensor([labels[i] for i in kept], dtype=torch.int64),
            speakers=[speaker_of(f.name) for f in kept_files],
            classes=classes,
            sample_rate=sample_rate,
            splits=splits,
            files=[str(f) for f in kept_files],
            source={
                "format": "speech-commands",
                "version": version,
                "root": str(root.resolve()),
                "vocabulary": vocab if isinstance(vocab, str) else classes,
                "split_rule": split_rule,
                "skipped": errors,
            },
        )

    data = cached_build(files_key(files, settings), build, use_cache=use_cache)
    for name in ("train", "test") if require_splits else ():
        if data.splits[name].numel() == 0:
            raise DataError(
                f"{root}: the {name} split is empty ({split_rule} rule); the folder is too small or the "
                "lists name no clip of these words"
            )
    return data


def load_background_noise(root: str | Path, sample_rate: int = 16000) -> list[np.ndarray]:
    """The clips of ``_background_noise_`` as mono float32 arrays at ``sample_rate`` (any length)."""
    from core.audio import audio_files, load_clip

    folder = Path(root) / NOISE_DIR
    if not folder.is_dir():
        return []
    return [load_clip(p, sample_rate, None) for p in audio_files(folder)]
