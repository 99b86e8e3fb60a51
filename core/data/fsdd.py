"""Free Spoken Digit Dataset: flat ``{digit}_{speaker}_{index}.wav`` files, 8 kHz, variable length.

The clips may be in any format soundfile reads (``.flac``, ``.ogg``, ``.aiff``, ...), recognised by
content (:func:`core.audio.audio_files`); the name before the suffix must follow the pattern.

Splits:
- ``official``: index 0-4 is the test set (the dataset's own rule); of the rest, index 5-9
  is the validation set used for early stopping, 10-49 the training set.
- ``speaker``: the ``test_speakers`` are held out whole as the test set; validation is
  index 5-9 of the remaining speakers, the rest is training.
Clips are resampled to ``sample_rate`` (16 kHz by default) and padded/cropped to 1 s.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from core.data.audioset import AudioSet, cached_build, decode_clips, files_key
from core.errors import DataError

__all__ = ["FSDD_CLASSES", "is_fsdd", "fsdd_root", "load_fsdd"]

FSDD_CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
#: The pattern of a clip's name without its suffix.
NAME_RE = re.compile(r"^(\d)_([A-Za-z0-9]+)_(\d+)$")


def _stem(path: Path) -> str:
    """The file name without its last suffix (``0_theo_3.flac`` -> ``0_theo_3``)."""
    return path.name.rpartition(".")[0] or path.name


def fsdd_root(path: str | Path) -> Path:
    """The folder holding the recordings: ``path`` itself or its ``recordings/`` sub-folder."""
    path = Path(path)
    if (path / "recordings").is_dir():
        return path / "recordings"
    return path


def is_fsdd(path: str | Path) -> bool:
    """True when the folder (or its ``recordings/``) holds files named like FSDD clips."""
    from core.audio import iter_audio_files

    root = fsdd_root(path)
    if not root.is_dir():
        return False
    return any(NAME_RE.match(_stem(p)) for p in iter_audio_files(root))


def load_fsdd(
    path: str | Path,
    split: Literal["official", "speaker"] = "official",
    *,
    test_speakers: Sequence[str] = ("theo",),
    sample_rate: int = 16000,
    num_samples: int | None = None,
    skip_bad: bool = False,
    use_cache: bool = True,
) -> AudioSet:
    """Load FSDD into an :class:`AudioSet` with the chosen split (see module docstring)."""
    from core.audio import audio_files

    root = fsdd_root(path)
    if not root.is_dir():
        raise DataError(f"{path}: no such FSDD folder")
    if split not in ("official", "speaker"):
        raise DataError(f"unknown FSDD split {split!r}; use 'official' or 'speaker'")
    num_samples = int(num_samples or sample_rate)
    entries = []
    stray = []
    for p in audio_files(root):
        m = NAME_RE.match(_stem(p))
        if m:
            entries.append((p, int(m.group(1)), m.group(2), int(m.group(3))))
        else:
            stray.append(p.name)
    if not entries:
        raise DataError(f"{root}: no FSDD clips ({{digit}}_{{speaker}}_{{index}}.wav, .flac, ...) found")
    speakers_present = sorted({e[2] for e in entries})
    if split == "speaker":
        unknown = sorted(set(test_speakers) - set(speakers_present))
        if unknown:
            raise DataError(
                f"{root}: test speaker(s) {', '.join(unknown)} not in the data; speakers: {', '.join(speakers_present)}"
            )
        if set(test_speakers) >= set(speakers_present):
            raise DataError("every speaker is a test speaker: nothing is left to train on")
    files = [e[0] for e in entries]
    settings = {
        "loader": "fsdd",
        "root": str(root.resolve()),
        "split": split,
        "test_speakers": sorted(test_speakers) if split == "speaker" else [],
        "sample_rate": sample_rate,
        "num_samples": num_samples,
        "skip_bad": skip_bad,
    }

    def split_of(speaker: str, index: int) -> str:
        if split == "official":
            return "test" if index < 5 else "validation" if index < 10 else "train"
        if speaker in test_speakers:
            return "test"
        return "validation" if 5 <= index < 10 else "train"

    def build() -> AudioSet:
        waves, kept, errors = decode_clips(files, sample_rate, num_samples, skip_bad=skip_bad)
        rows = [entries[i] for i in kept]
        names = [split_of(spk, idx) for _, _, spk, idx in rows]
        return AudioSet(
            waves=torch.from_numpy(waves),
            labels=torch.tensor([digit for _, digit, _, _ in rows], dtype=torch.int64),
            speakers=[spk for _, _, spk, _ in rows],
            classes=list(FSDD_CLASSES),
            sample_rate=sample_rate,
            splits={
                s: torch.tensor([i for i, n in enumerate(names) if n == s], dtype=torch.int64)
                for s in ("train", "validation", "test")
            },
            files=[str(p) for p, _, _, _ in rows],
            source={
                "format": "fsdd",
                "root": str(root.resolve()),
                "split": split,
                "test_speakers": list(test_speakers) if split == "speaker" else [],
                "skipped": errors,
                "stray_files": stray,
            },
        )

    return cached_build(files_key(files, settings), build, use_cache=use_cache)
