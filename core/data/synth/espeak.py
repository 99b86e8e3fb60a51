"""espeak-ng through ctypes: the one module that loads the library and touches its internal state.

espeak-ng is loaded from the ``espeakng-loader`` wheel (no subprocess, no binary). It keeps
synthesis state in C statics (pitch-flutter phase, automatic gain, Klatt resonators, its random
generators) that carry over from one utterance to the next, so the same call normally gives
different samples depending on what was said before. The engine finds those statics in the
library's ELF symbol table, snapshots them right after initialisation and restores them (with
``ctypes.memmove``) before every utterance, then sets the flutter phase and random seeds from the
caller's seed: every word is a pure function of its arguments. Writing into another version's
memory would corrupt the audio silently, so a library whose version is not in
:data:`SUPPORTED_VERSIONS` is refused with :class:`UnsupportedEspeakVersion` before anything is
written.
"""

from __future__ import annotations

import ctypes
import logging
import os
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np

from core.data.synth.dsp import trim_silence
from core.data.synth.voices import ACCENTS, VARIANTS
from core.errors import DataError

__all__ = [
    "SUPPORTED_VERSIONS",
    "SynthesisError",
    "UnsupportedEspeakVersion",
    "Synthesizer",
    "library_version",
    "check_version",
]

log = logging.getLogger(__name__)

#: espeak-ng versions whose C statics (names, sizes, meaning of ``Flutter_ix`` and ``time_count``)
#: this module was checked against: the only ones it writes into.
SUPPORTED_VERSIONS: tuple[str, ...] = ("1.52.0",)
_SUPPORTED_LOADER = "espeakng-loader==0.2.4"  # a wheel that ships espeak-ng 1.52.0


class SynthesisError(DataError):
    """espeak-ng cannot be loaded, refuses a voice, or produces no audio for a word."""


class UnsupportedEspeakVersion(SynthesisError):
    """The loaded espeak-ng is not a version whose internal state layout this module knows."""


_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_AUTO = 0
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7
_N_FLUTTER_STEPS = 0x170  # wavegen.c: N_FLUTTER; Flutter_ix runs over N_FLUTTER * 64 in steps of 64

#: C statics that carry synthesis state from one utterance to the next (wavegen.c,
#: klatt.c, common.c). A name ending in "." matches only function-local statics
#: ("voice." is klatt's local double, not the global voice pointer).
_STATE_SYMBOLS: tuple[str, ...] = (
    "espeak_rand_state",
    "nsamples",
    "wavephase",
    "rbreath",
    "end_wave",
    "peaks",
    "maxh",
    "maxh2",
    "amplitude2",
    "h_switch_sign",
    "agc",
    "cycle_count",
    "Flutter_ix",
    "time_count",
    "kt_globals",
    "kt_frame",
    "klattp",
    "klattp1",
    "klattp_inc",
    "prev_fr",
    "nlast",
    "noise",
    "vwave",
    "voice.",
    "vlast",
    "glotlast",
    "sample_count",
    "skew",
)
_REQUIRED_STATE = ("Flutter_ix", "agc", "cycle_count", "espeak_rand_state", "kt_globals")

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # [priority byte][code]\0 pairs: not a C string
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


# ---------------------------------------------------------------------------------------
# Library version
# ---------------------------------------------------------------------------------------


def library_version(lib: ctypes.CDLL) -> str:
    """The version the loaded library reports through ``espeak_Info`` (e.g. ``1.52.0``); ``unknown`` without one."""
    info = getattr(lib, "espeak_Info", None)
    if info is None:
        return "unknown"
    info.argtypes = [ctypes.c_void_p]
    info.restype = ctypes.c_char_p
    raw = info(None)
    return raw.decode("ascii", "replace").strip() if raw else "unknown"


def check_version(version: str, library_path: str) -> None:
    """Refuse (one-line :class:`UnsupportedEspeakVersion`) a version outside :data:`SUPPORTED_VERSIONS`."""
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedEspeakVersion(
            f"{library_path}: espeak-ng {version} found, but only {', '.join(SUPPORTED_VERSIONS)} is supported "
            f"(the generator resets espeak-ng's internal state, whose layout differs between versions); "
            f"pip install {_SUPPORTED_LOADER}"
        )


# ---------------------------------------------------------------------------------------
# ELF symbol table: where the C statics live
# ---------------------------------------------------------------------------------------


def _elf_symbols(path: str) -> dict[str, list[tuple[int, int, int, bool]]]:
    """Symbols of a 64-bit little-endian ELF file: name -> [(value, size, type, writable)]."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return {}
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    symbols: dict[str, list[tuple[int, int, int, bool]]] = {}
    for sh_type, offset, size, link, entsize in ((s[1], s[4], s[5], s[6], s[9]) for s in sections):
        if sh_type not in (2, 11) or entsize == 0:  # SHT_SYMTAB, SHT_DYNSYM
            continue
        strtab = sections[link][4]
        for j in range(size // entsize):
            name_off, info, _other, shndx, value, sym_size = struct.unpack_from("<IBBHQQ", data, offset + j * entsize)
            if value == 0 or shndx == 0 or shndx >= shnum:
                continue
            end = data.index(b"\0", strtab + name_off)
            name = data[strtab + name_off : end].decode("ascii", "replace")
            writable = bool(sections[shndx][2] & 0x1)  # SHF_WRITE
            entry = (value, sym_size, info & 0xF, writable)
            if entry not in symbols.setdefault(name, []):
                symbols[name].append(entry)
    return symbols


def _symbol_matches(name: str, key: str) -> bool:
    """Whether ELF symbol ``name`` is the static ``key`` (``name.1234`` for a function-local one)."""
    base, dot, suffix = name.partition(".")
    local = bool(dot) and suffix.isdigit()
    if key.endswith("."):
        return local and base == key[:-1]
    return name == key or (local and base == key)


# ---------------------------------------------------------------------------------------
# The process-wide engine
# ---------------------------------------------------------------------------------------


def _open_library(path: str) -> ctypes.CDLL:
    """Load the shared library and declare the signatures of the espeak-ng calls used."""
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise SynthesisError(f"{path}: cannot load espeak-ng ({exc}); reinstall espeakng-loader") from exc
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.POINTER(ctypes.c_uint),
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
    return lib


class _Engine:
    """The process-wide espeak-ng library: loaded and initialised once, used under a lock."""

    _instance: _Engine | None = None
    _instance_pid: int | None = None
    _class_lock = threading.Lock()

    @classmethod
    def get(cls, library_path: str | None = None, data_path: str | None = None) -> _Engine:
        """The engine of this process, created on first use (and again in a forked child)."""
        with cls._class_lock:
            if cls._instance is None or cls._instance_pid != os.getpid():
                cls._instance = cls(library_path, data_path)
                cls._instance_pid = os.getpid()
            return cls._instance

    def __init__(self, library_path: str | None, data_path: str | None) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise SynthesisError("the espeakng-loader package is missing; pip install espeakng-loader") from exc
        self.library_path = library_path or espeakng_loader.get_library_path()
        self.data_path = data_path or espeakng_loader.get_data_path()
        self.lock = threading.RLock()
        self.lib = _open_library(self.library_path)
        self.version = library_version(self.lib)
        check_version(self.version, self.library_path)  # before anything is initialised or written
        self._initialise()
        self._find_seeders()
        if not self.deterministic:
            log.warning("espeak-ng state cannot be reset in %s; clips will not be reproducible", self.library_path)
        self.variant_names = sorted(p.name for p in (Path(self.data_path) / "voices" / "!v").iterdir() if p.is_file())
        self.voices = self._list_voices()

    def _initialise(self) -> None:
        """espeak_Initialize, the output callback, and the snapshot of the state statics taken right after."""
        with self.lock:
            rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(), 0)
            if rate <= 0:
                raise SynthesisError(
                    f"{self.data_path}: espeak-ng failed to initialise (code {rate}); reinstall espeakng-loader"
                )
            self.sample_rate = int(rate)
            self._buffer = bytearray()
            self._callback = _CALLBACK(self._collect)  # keep a reference for the library's lifetime
            self.lib.espeak_SetSynthCallback(self._callback)
            self._snapshot: list[tuple[int, bytes]] = []
            self._flutter_ix: list[int] = []
            self._time_count: list[int] = []
            self.deterministic = self._find_state()
            self._snapshot = [(addr, ctypes.string_at(addr, size)) for addr, size in self._state_regions]

    def _find_seeders(self) -> None:
        """libc ``srand`` and ``espeak_ng_SetRandSeed``; without either, outputs are not reproducible."""
        self._srand = None
        self._set_rand_seed = None
        try:
            libc = ctypes.CDLL(None)
            self._srand = libc.srand
            self._srand.argtypes = [ctypes.c_uint]
            self._srand.restype = None
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            self.deterministic = False
        if hasattr(self.lib, "espeak_ng_SetRandSeed"):
            self._set_rand_seed = self.lib.espeak_ng_SetRandSeed
            self._set_rand_seed.argtypes = [ctypes.c_long]
        else:  # pragma: no cover - espeak-ng older than 1.52
            self.deterministic = False

    def _find_state(self) -> bool:
        """Locate the C statics to reset; False when the library has no usable symbol table."""
        self._state_regions: list[tuple[int, int]] = []
        try:
            symbols = _elf_symbols(self.library_path)
        except (OSError, struct.error, ValueError):
            return False
        bases = set()
        for fn in ("espeak_Synth", "espeak_Initialize", "espeak_SetParameter"):
            entries = [e for e in symbols.get(fn, []) if e[2] == 2]  # STT_FUNC
            if len(entries) != 1:
                return False
            bases.add(ctypes.cast(getattr(self.lib, fn), ctypes.c_void_p).value - entries[0][0])
        if len(bases) != 1:
            return False
        base = bases.pop()
        found = set()
        for name, entries in symbols.items():
            for key in _STATE_SYMBOLS:
                if not _symbol_matches(name, key):
                    continue
                for value, size, sym_type, writable in entries:
                    if sym_type != 1 or size <= 0 or not writable:  # STT_OBJECT in .data/.bss only
                        continue
                    self._state_regions.append((base + value, size))
                    found.add(key)
                    if key == "Flutter_ix" and size == 4:
                        self._flutter_ix.append(base + value)
                    if key == "time_count" and size == 4:
                        self._time_count.append(base + value)
        return all(k in found for k in _REQUIRED_STATE)

    def _collect(self, wav: Any, numsamples: int, events: Any) -> int:
        if numsamples > 0 and wav:
            self._buffer += ctypes.string_at(wav, 2 * numsamples)
        return 0

    def _list_voices(self) -> dict[str, str]:
        """English voices of the bundled data: language code (first of each voice) -> voice file name."""
        codes: dict[str, str] = {}
        with self.lock:
            voices = self.lib.espeak_ListVoices(None)
            i = 0
            while voices[i]:
                # languages: repeated [priority byte][code]\0, ended by a zero priority byte
                pos = voices[i].contents.languages
                langs = []
                while ctypes.string_at(pos, 1) != b"\0":
                    code = ctypes.string_at(pos + 1).decode("ascii", "replace")
                    langs.append(code)
                    pos += 2 + len(code)
                identifier = (voices[i].contents.identifier or b"").decode("ascii", "replace")
                if langs and langs[0].lower().startswith("en") and identifier:
                    # espeak_SetVoiceByName matches the voice file name, not the language code
                    codes[langs[0].lower()] = identifier.rsplit("/", 1)[-1]
                i += 1
        return dict(sorted(codes.items()))

    def _reset_state(self, seed: int) -> None:
        """Restore the post-initialisation snapshot, then set flutter phase and random seeds from ``seed``."""
        for addr, data in self._snapshot:
            ctypes.memmove(addr, data, len(data))
        flutter = (seed % _N_FLUTTER_STEPS) * 64
        for addr in self._flutter_ix:
            ctypes.c_int.from_address(addr).value = flutter
        for addr in self._time_count:
            ctypes.c_int.from_address(addr).value = seed % 100_003
        self._set_rand_seed(seed % 2**31)
        self._srand(seed % 2**32)

    def synth(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int) -> np.ndarray:
        """Raw int16 samples, shape (samples,), of ``text`` at :attr:`sample_rate`, reproducible for a seed."""
        encoded = text.encode("utf-8") + b"\0"
        with self.lock:
            if self.deterministic:
                self._reset_state(seed)
            code = self.lib.espeak_SetVoiceByName(voice.encode("utf-8"))
            if code != 0:
                raise SynthesisError(f"espeak-ng refused the voice {voice!r} (code {code}); see --list-voices")
            for param, value in ((_RATE, rate), (_VOLUME, 100), (_PITCH, pitch), (_RANGE, pitch_range), (_WORDGAP, 0)):
                self.lib.espeak_SetParameter(param, int(value), 0)
            self._buffer = bytearray()
            code = self.lib.espeak_Synth(encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_AUTO, None, None)
            self.lib.espeak_Synchronize()
            if code != 0:
                raise SynthesisError(f"espeak-ng failed to synthesise {text!r} with {voice!r} (code {code})")
            return np.frombuffer(bytes(self._buffer), dtype="<i2").copy()


# ---------------------------------------------------------------------------------------
# The public synthesizer
# ---------------------------------------------------------------------------------------


class Synthesizer:
    """English words from espeak-ng as float32 waves; all instances share one library.

    espeak-ng is process-global and not thread safe: every call takes a lock. Outputs are
    reproducible for a ``seed`` when :attr:`deterministic` is True (see the module notes).
    """

    def __init__(self, library_path: str | None = None, data_path: str | None = None) -> None:
        """Load (once per process) and initialise espeak-ng from the espeakng-loader wheel."""
        self._engine = _Engine.get(library_path, data_path)

    @property
    def sample_rate(self) -> int:
        """espeak-ng's native output rate (22050 Hz for the bundled data)."""
        return self._engine.sample_rate

    @property
    def deterministic(self) -> bool:
        """True when synthesis state is reset before each word, so outputs depend only on arguments."""
        return self._engine.deterministic

    @property
    def espeak_version(self) -> str:
        """The loaded espeak-ng's version, one of :data:`SUPPORTED_VERSIONS`."""
        return self._engine.version

    def voices(self) -> list[str]:
        """The English accents (espeak-ng language codes) usable here, in :data:`ACCENTS` order."""
        return [a for a in ACCENTS if a in self._engine.voices]

    def all_english_voices(self) -> list[str]:
        """Every English language code the bundled data lists (including ones not used)."""
        return list(self._engine.voices)

    def variants(self) -> list[str]:
        """The curated human-sounding variants (:data:`VARIANTS`) present in the bundled data."""
        present = set(self._engine.variant_names)
        return [v for v in VARIANTS if v in present]

    def all_variants(self) -> list[str]:
        """Every variant file in ``voices/!v`` of the bundled data."""
        return list(self._engine.variant_names)

    def _voice_name(self, voice: str, variant: str | None) -> str:
        """The espeak-ng voice name for an English language code and an optional variant file."""
        if voice not in self._engine.voices:
            raise SynthesisError(f"unknown voice {voice!r}; English voices here: {', '.join(self._engine.voices)}")
        name = self._engine.voices[voice]
        if variant:
            if variant not in self._engine.variant_names:
                raise SynthesisError(f"unknown voice variant {variant!r}; see --list-voices")
            name = f"{name}+{variant}"
        return name

    def synthesize(
        self,
        word: str,
        voice: str = "en-us",
        variant: str | None = None,
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        *,
        seed: int = 0,
        punctuation: str = ".",
        trim: bool = True,
    ) -> tuple[np.ndarray, int]:
        """Say ``word`` and return ``(float32 wave in [-1, 1) of shape (samples,), sample_rate)``, trimmed of silence.

        ``voice`` is an English language code, ``variant`` a file of ``voices/!v`` (an
        unknown one is an error: espeak-ng itself would silently ignore it), ``rate`` in
        words per minute (80-450), ``pitch`` and ``pitch_range`` 0-100. ``seed`` sets the
        pitch-flutter phase and espeak-ng's internal noise, so one seed, one waveform.
        """
        if not word or not word.strip():
            raise SynthesisError("nothing to say: the word is empty")
        name = self._voice_name(voice, variant)
        if not 80 <= rate <= 450:
            raise SynthesisError(f"speaking rate {rate} is outside espeak-ng's 80-450 words per minute")
        if not (0 <= pitch <= 100 and 0 <= pitch_range <= 100):
            raise SynthesisError(f"pitch {pitch} and pitch range {pitch_range} must be within 0-100")
        raw = self._engine.synth(word.strip() + punctuation, name, rate, pitch, pitch_range, int(seed))
        wave = raw.astype(np.float32) / 32768.0
        if trim:
            wave = trim_silence(wave, self.sample_rate)
        if wave.size == 0 or not np.any(wave):
            raise SynthesisError(f"espeak-ng produced no audio for {word!r} with {name!r}")
        return np.ascontiguousarray(wave), self.sample_rate
