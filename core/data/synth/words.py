"""The words a corpus says: a named vocabulary (scd10, scd30, asc10, asc30) or a checked word list (folder names)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.data.speech_commands import VOCABULARIES
from core.errors import ConfigError

__all__ = ["VOCABULARIES", "parse_words", "resolve_vocab", "normalise_words"]

_WORD_RE = re.compile(r"^[^\W_][\w' -]*$")


def parse_words(text: str | Sequence[str]) -> list[str]:
    """A comma list (or list) of words -> checked words usable as folder names; else ConfigError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    words = [str(w).strip() for w in items if str(w).strip()]
    if not words:
        raise ConfigError(f"the word list is empty; give --vocab {'|'.join(VOCABULARIES)} or --words yes,no,...")
    bad = [w for w in words if not _WORD_RE.match(w)]
    if bad:
        raise ConfigError(
            f"cannot use {bad[0]!r} as a word: words are letters, digits, spaces, ' and - (they name folders)"
        )
    dupes = sorted({w for w in words if words.count(w) > 1})
    if dupes:
        raise ConfigError(f"the word list repeats {', '.join(dupes)}")
    return words


def resolve_vocab(vocab: str) -> list[str]:
    """A vocabulary name (``scd10``, ``asc10``, ...) -> its word list in class order; else a ConfigError."""
    key = vocab.strip().lower()
    if key not in VOCABULARIES:
        raise ConfigError(f"unknown vocabulary {vocab!r}; use one of {', '.join(VOCABULARIES)} or --words a,b,c")
    return list(VOCABULARIES[key])


def normalise_words(words: Sequence[str] | str) -> list[str]:
    """A vocabulary name, a comma list or a list of words -> the checked word list."""
    if isinstance(words, str):
        return resolve_vocab(words) if words.strip().lower() in VOCABULARIES else parse_words(words)
    return parse_words(words)
