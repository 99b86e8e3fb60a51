"""Datasets: Speech Commands layout, FSDD, the espeak-ng synthetic corpus, the in-memory AudioSet.

:func:`load_dataset` detects a folder's kind (one sub-folder of audio clips per word: Speech
Commands; flat ``{digit}_{speaker}_{n}.<audio>``: FSDD) unless ``data_format`` forces it. Clips may
be in any format soundfile reads (WAV, FLAC, OGG/Vorbis, AIFF, ...), recognised by content.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from core.data.audioset import AudioSet
from core.data.fsdd import is_fsdd, load_fsdd
from core.data.speech_commands import VOCABULARIES, default_vocabulary, is_speech_commands, load_speech_commands
from core.errors import DataError

__all__ = ["AudioSet", "DATA_FORMATS", "VOCABULARIES", "detect_format", "load_dataset"]

DATA_FORMATS = ("speech-commands", "fsdd")


def detect_format(path: str | Path) -> Literal["speech-commands", "fsdd"]:
    """``speech-commands`` for word sub-folders, ``fsdd`` for flat FSDD names; else DataError."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such dataset folder")
    if not path.is_dir():
        raise DataError(f"{path}: a dataset is a folder, not a file")
    if is_fsdd(path):  # before the word-folder test: FSDD may sit in a recordings/ sub-folder
        return "fsdd"
    if is_speech_commands(path):
        return "speech-commands"
    raise DataError(
        f"{path}: neither a Speech Commands folder (one sub-folder of audio files per word) "
        "nor an FSDD folder ({digit}_{speaker}_{n}.wav, .flac, ...); force one with --data-format"
    )


def load_dataset(
    path: str | Path,
    *,
    data_format: str | None = None,
    vocab: str | Sequence[str] | None = None,
    sample_rate: int = 16000,
    num_samples: int | None = None,
    fsdd_split: Literal["official", "speaker"] = "official",
    test_speakers: Sequence[str] = ("theo",),
    skip_bad: bool = False,
    use_cache: bool = True,
    **kwargs: Any,
) -> AudioSet:
    """Load any supported dataset folder as an :class:`AudioSet` at ``sample_rate``.

    For Speech Commands ``vocab`` defaults to ``scd10`` when those words are present, else
    ``asc10`` when those are (the Arabic Speech Commands), else every word folder; FSDD ignores
    ``vocab`` (its classes are the ten digits).
    """
    fmt = data_format or detect_format(path)
    if fmt == "speech-commands":
        if vocab is None:
            vocab = default_vocabulary(path)
        return load_speech_commands(
            path,
            vocab,
            sample_rate=sample_rate,
            num_samples=num_samples,
            skip_bad=skip_bad,
            use_cache=use_cache,
            **kwargs,
        )
    if fmt == "fsdd":
        return load_fsdd(
            path,
            fsdd_split,
            test_speakers=test_speakers,
            sample_rate=sample_rate,
            num_samples=num_samples,
            skip_bad=skip_bad,
            use_cache=use_cache,
        )
    raise DataError(f"unknown data format {fmt!r}; use one of {', '.join(DATA_FORMATS)}")
