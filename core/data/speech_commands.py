"""Google Speech Commands folder layout (v0.01 and v0.02) and the SCD-10/SCD-30 vocabularies.

Layout: ``<root>/<word>/<speaker>_nohash_<n>.wav``, optional ``validation_list.txt`` and
``testing_list.txt`` (paths relative to the root), and ``_background_noise_/``. When the
lists are absent, clips are split by the dataset's own rule: a SHA-1 hash of the speaker
part of the file name, so that a speaker's clips always fall in one split.
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
    "resolve_vocabulary",
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
#: Class order matters: the target class index 2 is "up" in SCD-10 and "cat" in SCD-30,
#: as in the authors' code.
VOCABULARIES: dict[str, list[str]] = {"scd10": SCD10, "scd30": SCD30}
V2_ONLY_WORDS = {"backward", "follow", "forward", "learn", "visual"}
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1
NOISE_DIR = "_background_noise_"


def resolve_vocabulary(vocab: str | Sequence[str] | None, available: Sequence[str] = ()) -> list[str]:
    """Turn ``scd10``/``scd30``, a comma list or a list of words into the class list.

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
        raise DataError(f"empty vocabulary {vocab!r}; use scd10, scd30 or a comma-separated word list")
    if len(set(words)) != len(words):
        raise DataError(f"vocabulary repeats a word: {words}")
    return words


def speaker_of(filename: str) -> str:
    """The speaker id: the file name up to ``_nohash_`` (the whole stem if absent)."""
    name = Path(filename).name
    return name.split("_nohash_")[0] if "_nohash_" in name else Path(name).stem


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
    """True when ``root`` has at least one word folder holding WAV files."""
    root = Path(root)
    if not root.is_dir():
        return False
    return any(next((root / d).glob("*.wav"), None) is not None for d in word_folders(root))


def _read_list(path: Path, root: Path) -> set[str]:
    if not path.is_file():
        return set()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: cannot read the split list ({exc}); it should be UTF-8 text with one "
            "<word>/<file>.wav per line. Fix or remove it"
        ) from exc
    entries = set()
    for line in text.splitlines():
        line = line.strip().replace("\\", "/")
        if line:
            entries.add(line)
    return entries


def load_speech_commands(
    root: str | Path,
    vocab: str | Sequence[str] | None = "scd10",
    *,
    sample_rate: int = 16000,
    num_samples: int | None = None,
    skip_bad: bool = False,
    use_cache: bool = True,
    max_per_class: int | None = None,
    require_splits: bool = True,
) -> AudioSet:
    """Load the words of ``vocab`` from a Speech Commands folder into an :class:`AudioSet`.

    Splits come from ``validation_list.txt``/``testing_list.txt`` when present (every other
    clip is training), else from :func:`which_set`. ``max_per_class`` keeps the first N files
    per word (sorted by name) for quick experiments. ``require_splits=False`` accepts a folder
    whose train or test split is empty (auxiliary data that is used whole).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset folder")
    num_samples = int(num_samples or sample_rate)
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
        word_files = sorted((root / word).glob("*.wav"))
        if max_per_class is not None:
            word_files = word_files[:max_per_class]
        if not word_files:
            raise DataError(f"{root / word}: the word folder holds no .wav files")
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
        "lists": hashlib.sha1(("\n".join(sorted(val_list)) + "\0" + "\n".join(sorted(test_list))).encode()).hexdigest(),
    }

    def build() -> AudioSet:
        waves, kept, errors = decode_clips(files, sample_rate, num_samples, skip_bad=skip_bad)
        kept_files = [files[i] for i in kept]
        rel = [f"{f.parent.name}/{f.name}" for f in kept_files]
        split_of = []
        for r in rel:
            if split_rule == "lists":
                split_of.append("validation" if r in val_list else "test" if r in test_list else "train")
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
    from core.audio import load_clip

    folder = Path(root) / NOISE_DIR
    if not folder.is_dir():
        return []
    return [load_clip(p, sample_rate, None) for p in sorted(folder.glob("*.wav"))]
