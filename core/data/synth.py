"""An offline, speaker-structured speech-command corpus made with espeak-ng.

``python -m core.data.synth --vocab scd10 --clips-per-word 200 --out DIR`` writes the
Google Speech Commands layout (``<word>/<speaker>_nohash_<n>.wav``, ``validation_list.txt``,
``testing_list.txt``, ``_background_noise_/``) plus ``speakers.json`` and ``synth_info.json``.

espeak-ng is loaded from the ``espeakng-loader`` wheel through ctypes (no subprocess, no
binary). A *speaker* is one voice configuration: English accent x voice variant x speaking
rate x pitch x pitch range, plus a per-speaker microphone band limit. Validation and test
speakers are held out by *voice family* (a variant and its near-clones), so that no test
speaker shares a timbre with a training speaker; accents are shared, as in real data.

Determinism: espeak-ng keeps synthesis state in C statics (pitch-flutter phase, automatic
gain, Klatt resonators, its random generators) that carry over from one utterance to the
next, so the same call normally gives different samples depending on what was said
before. :class:`Synthesizer` snapshots those statics (found in the library's ELF symbol
table) right after initialisation and restores them before every utterance, then sets the
flutter phase and random seeds from the caller's seed. Every clip is therefore a pure
function of (seed, word, speaker, n): the same arguments give byte-identical WAV files, in
any order and with any number of workers, on one CPU model. Across CPU models the last bits
can differ: the resampling after espeak-ng runs through MKL-backed torch kernels whose code
path depends on the CPU (``MKL_CBWR=COMPATIBLE`` set before torch's first kernel changes the
bytes here, and the same command gave other digests on an AMD EPYC than on an Intel Xeon), so
``synth_info.json`` records the CPU model beside the libraries and the digest.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import logging
import math
import os
import re
import shutil
import struct
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.audio import fix_length, resample, write_wav
from core.data.speech_commands import VOCABULARIES
from core.errors import ConfigError, DataError
from core.runtime import cpu_model

__all__ = [
    "VOCABULARIES",
    "GENERATOR_VERSION",
    "SynthesisError",
    "Synthesizer",
    "SpeakerConfig",
    "SynthSummary",
    "NOISE_FILES",
    "speaker_pool",
    "sample_speakers",
    "assign_splits",
    "coloured_noise",
    "render_clip",
    "generate_corpus",
    "main",
]

log = logging.getLogger("core.data.synth")

GENERATOR_VERSION = "1.0"

#: English accents, by espeak-ng language code; used when the bundled data has them
#: (``en-shaw`` is left out: it reads the Shavian alphabet and is en-gb for Latin text).
ACCENTS: tuple[str, ...] = (
    "en-us", "en-us-nyc", "en-gb", "en-gb-x-rp", "en-gb-scotland",
    "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
)

#: Voice variants (files in ``espeak-ng-data/voices/!v``) that sound like a person:
#: name -> (gender, family). Left out on purpose: whisper/whisperf, croak, Demonic,
#: robosoft*, UniRobot, anikaRobot, announcer, klatt1-5 (buzzy), caleb (no voicing),
#: RicishayMax* and Marco (heavy echo), Tweaky/Mr serious, fast, Storm, Nguyen, sandro,
#: zac (a child's pitch), iven* (extreme voicing). Variants that are near copies of one
#: another share a family, and a family never straddles two splits.
VARIANTS: dict[str, tuple[str, str]] = {
    "m1": ("male", "m1"), "m2": ("male", "m2"), "m3": ("male", "m3"), "m4": ("male", "m4"),
    "m5": ("male", "m5"), "m6": ("male", "m6"), "m7": ("male", "m7"), "m8": ("male", "m8"),
    "Alex": ("male", "alex"), "Andy": ("male", "andy"), "Lee": ("male", "andy"),
    "Gene": ("male", "gene"), "Gene2": ("male", "gene"), "Jacky": ("male", "jacky"),
    "Mario": ("male", "mario"), "Michael": ("male", "mario"), "gustave": ("male", "mario"),
    "marcelo": ("male", "mario"), "Mike": ("male", "mike"), "mike2": ("male", "mike"),
    "Denis": ("male", "denis"), "Diogo": ("male", "diogo"), "Henrique": ("male", "diogo"),
    "Hugo": ("male", "diogo"), "michel": ("male", "diogo"), "miguel": ("male", "diogo"),
    "adam": ("male", "adam"), "benjamin": ("male", "benjamin"), "david": ("male", "david"),
    "edward2": ("male", "edward"), "antonio": ("male", "antonio"), "boris": ("male", "boris"),
    "max": ("male", "max"), "grandpa": ("male", "grandpa"), "ian": ("male", "ian"),
    "john": ("male", "john"), "pedro": ("male", "john"), "norbert": ("male", "norbert"),
    "kaukovalta": ("male", "kaukovalta"), "paul": ("male", "paul"), "quincy": ("male", "quincy"),
    "rob": ("male", "rob"), "robert": ("male", "rob"), "travis": ("male", "travis"),
    "victor": ("male", "victor"),
    "f1": ("female", "f1"), "f2": ("female", "f2"), "f3": ("female", "f3"), "f4": ("female", "f4"),
    "f5": ("female", "f5"), "Andrea": ("female", "andrea"), "Annie": ("female", "annie"),
    "Alicia": ("female", "alicia"), "anika": ("female", "anika"), "aunty": ("female", "aunty"),
    "belinda": ("female", "belinda"), "linda": ("female", "linda"), "grandma": ("female", "grandma"),
    "shelby": ("female", "shelby"), "steph": ("female", "steph"), "steph2": ("female", "steph"),
    "steph3": ("female", "steph"),
}

RATES: tuple[int, ...] = (120, 145, 170, 195, 220)  # words per minute (espeak-ng default 175)
PITCHES: tuple[int, ...] = (30, 40, 50, 60, 70)  # espeak-ng base pitch 0-100 (default 50); male F0 ~75-130 Hz, female ~140-260 Hz
PITCH_RANGES: tuple[int, ...] = (20, 50, 80)  # espeak-ng pitch range 0-100 (default 50)
#: Per-speaker microphone band limits in Hz (None: not limited).
LOWPASS_HZ: tuple[int | None, ...] = (None, 7000, 5500, 4500, 3400)
HIGHPASS_HZ: tuple[int | None, ...] = (None, 80, 150, 300)

NOISE_COLOURS = ("white", "pink", "brown")
#: Background-noise files written to ``_background_noise_``: name -> (colour, seconds).
NOISE_FILES: dict[str, tuple[str, float]] = {
    "white_noise": ("white", 20.0),
    "pink_noise": ("pink", 25.0),
    "brown_noise": ("brown", 15.0),
}
NOISE_DIR = "_background_noise_"

_PUNCTUATION = (".", ".", ".", "!", "?")  # sentence mood: mostly statements
_MARGIN_SECONDS = 0.02  # kept free at each end of a clip when a word is placed
_WORD_RE = re.compile(r"^[^\W_][\w' -]*$")


class SynthesisError(DataError):
    """espeak-ng cannot be loaded, refuses a voice, or produces no audio for a word."""


# ---------------------------------------------------------------------------------------
# espeak-ng through ctypes
# ---------------------------------------------------------------------------------------

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_AUTO = 0
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7
_N_FLUTTER_STEPS = 0x170  # wavegen.c: N_FLUTTER; Flutter_ix runs over N_FLUTTER * 64 in steps of 64

#: C statics that carry synthesis state from one utterance to the next (wavegen.c,
#: klatt.c, common.c). A name ending in "." matches only function-local statics
#: ("voice." is klatt's local double, not the global voice pointer).
_STATE_SYMBOLS: tuple[str, ...] = (
    "espeak_rand_state", "nsamples", "wavephase", "rbreath", "end_wave", "peaks",
    "maxh", "maxh2", "amplitude2", "h_switch_sign", "agc", "cycle_count", "Flutter_ix",
    "time_count", "kt_globals", "kt_frame", "klattp", "klattp1", "klattp_inc", "prev_fr",
    "nlast", "noise", "vwave", "voice.", "vlast", "glotlast", "sample_count", "skew",
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
    base, dot, suffix = name.partition(".")
    local = bool(dot) and suffix.isdigit()
    if key.endswith("."):
        return local and base == key[:-1]
    return name == key or (local and base == key)


class _Engine:
    """The process-wide espeak-ng library: loaded and initialised once, used under a lock."""

    _instance: "_Engine | None" = None
    _instance_pid: int | None = None
    _class_lock = threading.Lock()

    @classmethod
    def get(cls, library_path: str | None = None, data_path: str | None = None) -> "_Engine":
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
        try:
            lib = ctypes.CDLL(self.library_path)
        except OSError as exc:
            raise SynthesisError(f"{self.library_path}: cannot load espeak-ng ({exc}); reinstall espeakng-loader") from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        self.lib = lib
        with self.lock:
            rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(), 0)
            if rate <= 0:
                raise SynthesisError(f"{self.data_path}: espeak-ng failed to initialise (code {rate}); reinstall espeakng-loader")
            self.sample_rate = int(rate)
            self._buffer = bytearray()
            self._callback = _CALLBACK(self._collect)  # keep a reference for the library's lifetime
            lib.espeak_SetSynthCallback(self._callback)
            self._snapshot: list[tuple[int, bytes]] = []
            self._flutter_ix: list[int] = []
            self._time_count: list[int] = []
            self.deterministic = self._find_state()
            self._snapshot = [(addr, ctypes.string_at(addr, size)) for addr, size in self._state_regions]
        self._srand = None
        self._set_rand_seed = None
        try:
            libc = ctypes.CDLL(None)
            self._srand = libc.srand
            self._srand.argtypes = [ctypes.c_uint]
            self._srand.restype = None
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            self.deterministic = False
        if hasattr(lib, "espeak_ng_SetRandSeed"):
            self._set_rand_seed = lib.espeak_ng_SetRandSeed
            self._set_rand_seed.argtypes = [ctypes.c_long]
        else:  # pragma: no cover - espeak-ng older than 1.52
            self.deterministic = False
        if not self.deterministic:
            log.warning("espeak-ng state cannot be reset in %s; clips will not be reproducible", self.library_path)
        self.variant_names = sorted(p.name for p in (Path(self.data_path) / "voices" / "!v").iterdir() if p.is_file())
        self.voices = self._list_voices()

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

    def synth(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int) -> np.ndarray:
        """Raw int16 samples of ``text`` at :attr:`sample_rate`, reproducible for a seed."""
        encoded = text.encode("utf-8") + b"\0"
        with self.lock:
            if self.deterministic:
                for addr, data in self._snapshot:
                    ctypes.memmove(addr, data, len(data))
                flutter = (seed % _N_FLUTTER_STEPS) * 64
                for addr in self._flutter_ix:
                    ctypes.c_int.from_address(addr).value = flutter
                for addr in self._time_count:
                    ctypes.c_int.from_address(addr).value = seed % 100_003
                self._set_rand_seed(seed % 2**31)
                self._srand(seed % 2**32)
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


def trim_silence(wave: np.ndarray, sample_rate: int, threshold: float = 0.002, pad_seconds: float = 0.005) -> np.ndarray:
    """Cut leading/trailing samples below ``threshold`` x peak, keeping a few ms: the word itself."""
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak == 0.0:
        return wave[:0]
    loud = np.flatnonzero(np.abs(wave) > threshold * peak)
    pad = int(round(pad_seconds * sample_rate))
    return wave[max(0, loud[0] - pad) : min(wave.size, loud[-1] + 1 + pad)]


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
        """Say ``word`` and return ``(float32 wave in [-1, 1), sample_rate)``, trimmed of silence.

        ``voice`` is an English language code, ``variant`` a file of ``voices/!v`` (an
        unknown one is an error: espeak-ng itself would silently ignore it), ``rate`` in
        words per minute (80-450), ``pitch`` and ``pitch_range`` 0-100. ``seed`` sets the
        pitch-flutter phase and espeak-ng's internal noise, so one seed, one waveform.
        """
        if not word or not word.strip():
            raise SynthesisError("nothing to say: the word is empty")
        if voice not in self._engine.voices:
            raise SynthesisError(f"unknown voice {voice!r}; English voices here: {', '.join(self._engine.voices)}")
        name = self._engine.voices[voice]
        if variant:
            if variant not in self._engine.variant_names:
                raise SynthesisError(f"unknown voice variant {variant!r}; see --list-voices")
            name = f"{name}+{variant}"
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


# ---------------------------------------------------------------------------------------
# Speakers and splits
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeakerConfig:
    """One synthetic speaker: accent, variant, rate, pitch, pitch range and microphone band."""

    accent: str
    variant: str
    rate: int
    pitch: int
    pitch_range: int
    lowpass_hz: int | None = None
    highpass_hz: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON-able values (what the speaker id hashes)."""
        return asdict(self)

    @property
    def speaker_id(self) -> str:
        """First 8 hex digits of the SHA-1 of the configuration: stable across runs and seeds."""
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]

    @property
    def gender(self) -> str:
        """``male``/``female`` from :data:`VARIANTS` (``unknown`` for a variant outside it)."""
        return VARIANTS.get(self.variant, ("unknown", self.variant))[0]

    @property
    def family(self) -> str:
        """The voice family (a variant and its near-clones); splits never share one."""
        return VARIANTS.get(self.variant, ("unknown", self.variant))[1]


def speaker_pool(accents: Sequence[str], variants: Sequence[str]) -> list[tuple[str, str, int, int, int]]:
    """The full product accent x variant x rate x pitch x range that speakers are drawn from."""
    return [
        (a, v, r, p, g)
        for a in accents for v in variants for r in RATES for p in PITCHES for g in PITCH_RANGES
    ]


def _stable_int(*parts: object) -> int:
    """A 64-bit integer from text, the same in every process (unlike ``hash``)."""
    digest = hashlib.sha1("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def sample_speakers(n: int, seed: int, accents: Sequence[str], variants: Sequence[str]) -> list[SpeakerConfig]:
    """Draw ``n`` distinct speakers from the pool, balanced between male and female variants.

    Each configuration's weight is 1/(number of configurations of its gender), so half the
    speakers are female even though more male variants exist. Same seed, same speakers.
    """
    pool = speaker_pool(accents, variants)
    if n < 1:
        raise ConfigError(f"the number of speakers must be at least 1, got {n}")
    if n > len(pool):
        raise ConfigError(f"{n} speakers asked for, but only {len(pool)} distinct voice configurations exist; ask for fewer")
    genders = np.array([VARIANTS.get(v, ("unknown", v))[0] for _, v, *_ in pool])
    weights = np.zeros(len(pool))
    for g in set(genders.tolist()):
        mask = genders == g
        weights[mask] = 1.0 / mask.sum()
    weights /= weights.sum()
    rng = np.random.default_rng([seed, _stable_int("speakers") % 2**32])
    chosen = rng.choice(len(pool), size=n, replace=False, p=weights)
    speakers = []
    for index in chosen:
        a, v, r, p, g = pool[int(index)]
        sub = np.random.default_rng([seed, _stable_int("channel", a, v, r, p, g) % 2**32])
        lowpass = LOWPASS_HZ[int(sub.integers(len(LOWPASS_HZ)))]
        highpass = HIGHPASS_HZ[int(sub.integers(len(HIGHPASS_HZ)))]
        speakers.append(SpeakerConfig(a, v, r, p, g, lowpass, highpass))
    ids = [s.speaker_id for s in speakers]
    if len(set(ids)) != len(ids):  # pragma: no cover - 8 hex digits, a few thousand speakers
        raise ConfigError("two sampled speakers share an id; use another --seed")
    return sorted(speakers, key=lambda s: s.speaker_id)


def assign_splits(
    speakers: Sequence[SpeakerConfig],
    seed: int,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split_by: str = "family",
) -> tuple[dict[str, str], str]:
    """Map speaker id -> ``train``/``validation``/``test``; return the map and the rule used.

    ``split_by="family"`` keeps each voice family in one split (test voices are never heard
    in training), falling back to ``speaker`` when fewer than 5 families are present. Groups
    are ordered stratified by gender and taken until each held-out split has its share of
    speakers; with 2+ speakers the test split gets at least one, with 3+ validation too.
    """
    if split_by not in ("family", "speaker"):
        raise ConfigError(f"unknown split rule {split_by!r}; use family or speaker")
    if not (0 <= validation_fraction < 1 and 0 <= test_fraction < 1 and validation_fraction + test_fraction < 1):
        raise ConfigError("validation and test fractions must be in [0, 1) and leave room for training")
    n = len(speakers)
    rule = split_by
    if rule == "family" and len({s.family for s in speakers}) < 5:
        rule = "speaker"
    key = (lambda s: s.family) if rule == "family" else (lambda s: s.speaker_id)
    groups: dict[str, list[SpeakerConfig]] = {}
    for s in sorted(speakers, key=lambda s: s.speaker_id):
        groups.setdefault(key(s), []).append(s)
    # stratified order: spread each gender's groups evenly over [0, 1), then merge
    rng = np.random.default_rng([seed, _stable_int("splits") % 2**32])
    by_gender: dict[str, list[str]] = {}
    for name in sorted(groups):
        by_gender.setdefault(groups[name][0].gender, []).append(name)
    positioned = []
    for gender in sorted(by_gender):
        names = by_gender[gender]
        order = rng.permutation(len(names))
        offset = rng.random()
        for rank, i in enumerate(order):
            positioned.append(((rank + offset) / len(names), names[i]))
    ordered = [name for _, name in sorted(positioned)]
    want_test = max(1 if n >= 2 else 0, round(test_fraction * n)) if test_fraction > 0 else 0
    want_val = max(1 if n >= 3 else 0, round(validation_fraction * n)) if validation_fraction > 0 else 0
    split_of: dict[str, str] = {}
    counts = {"test": 0, "validation": 0}
    for name in ordered:
        members = groups[name]
        if counts["test"] < want_test and n - counts["test"] - counts["validation"] - len(members) >= 1:
            target = "test"
        elif counts["validation"] < want_val and n - counts["test"] - counts["validation"] - len(members) >= 1:
            target = "validation"
        else:
            target = "train"
        if target != "train":
            counts[target] += len(members)
        for s in members:
            split_of[s.speaker_id] = target
    return split_of, rule


# ---------------------------------------------------------------------------------------
# Clips
# ---------------------------------------------------------------------------------------


def coloured_noise(num_samples: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with a 1/f^alpha power spectrum (white 0, pink 1, brown 2), unit RMS."""
    alpha = {"white": 0.0, "pink": 1.0, "brown": 2.0}.get(colour)
    if alpha is None:
        raise ConfigError(f"unknown noise colour {colour!r}; use one of {', '.join(NOISE_COLOURS)}")
    white = rng.standard_normal(num_samples)
    if alpha == 0.0:
        noise = white
    else:
        spectrum = np.fft.rfft(white)
        freqs = np.arange(spectrum.size, dtype=np.float64)
        freqs[0] = 1.0
        spectrum *= freqs ** (-alpha / 2.0)
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, n=num_samples)
    rms = float(np.sqrt(np.mean(noise**2)))
    return (noise / rms) if rms > 0 else noise


def _band_limit(wave: np.ndarray, sample_rate: int, lowpass_hz: int | None, highpass_hz: int | None) -> np.ndarray:
    """Zero-phase Butterworth-shaped band limit (low-pass order 4, high-pass order 2) by FFT."""
    nyquist = sample_rate / 2
    if lowpass_hz is not None and lowpass_hz >= nyquist * 0.95:
        lowpass_hz = None
    if lowpass_hz is None and highpass_hz is None:
        return wave
    spectrum = np.fft.rfft(wave)
    freqs = np.fft.rfftfreq(wave.size, 1.0 / sample_rate)
    gain = np.ones_like(freqs)
    if lowpass_hz is not None:
        gain /= np.sqrt(1.0 + (freqs / lowpass_hz) ** 8)
    if highpass_hz is not None:
        with np.errstate(divide="ignore"):
            gain /= np.sqrt(1.0 + (highpass_hz / np.maximum(freqs, 1e-9)) ** 4)
    return np.fft.irfft(spectrum * gain, n=wave.size)


@dataclass
class ClipInfo:
    """What happened to one clip: its jittered settings and whether it had to be shortened."""

    rate: int
    pitch: int
    pitch_range: int
    punctuation: str
    onset_seconds: float
    word_seconds: float
    peak: float
    snr_db: float
    noise: str
    sped_up: bool = False
    cropped: bool = False


def render_clip(
    synth: Synthesizer,
    word: str,
    speaker: SpeakerConfig,
    n: int,
    seed: int,
    sample_rate: int = 16000,
    clip_seconds: float = 1.0,
    snr_db: tuple[float, float] = (20.0, 40.0),
    peak_dbfs: tuple[float, float] = (-18.0, -1.0),
) -> tuple[np.ndarray, ClipInfo]:
    """The ``n``-th utterance of ``word`` by ``speaker``: a float32 clip and how it was made.

    A pure function of its arguments (the random stream is seeded from seed, word, speaker
    and n), so clips can be made in any order or in parallel.
    """
    rng = np.random.default_rng([seed % 2**32, _stable_int("clip", word, speaker.speaker_id, n) % 2**32])
    rate = int(np.clip(round(speaker.rate * rng.uniform(0.93, 1.07)), 80, 450))
    pitch = int(np.clip(speaker.pitch + rng.integers(-4, 5), 0, 100))
    pitch_range = int(np.clip(speaker.pitch_range + rng.integers(-8, 9), 0, 100))
    punctuation = _PUNCTUATION[int(rng.integers(len(_PUNCTUATION)))]
    synth_seed = int(rng.integers(2**31))
    num_samples = int(round(clip_seconds * sample_rate))
    margin = int(round(_MARGIN_SECONDS * sample_rate))
    room = num_samples - 2 * margin

    def say(at_rate: int) -> np.ndarray:
        wave, rate_in = synth.synthesize(word, speaker.accent, speaker.variant, at_rate, pitch, pitch_range,
                                         seed=synth_seed, punctuation=punctuation)
        return np.asarray(resample(wave, rate_in, sample_rate), dtype=np.float64)

    wave = say(rate)
    sped_up = cropped = False
    if wave.size > room and rate < 450:
        rate = int(min(450, math.ceil(rate * wave.size / room * 1.05)))
        wave = say(rate)
        sped_up = True
    if wave.size > room:
        wave = fix_length(wave, max(room, 1))
        cropped = True
    word_seconds = wave.size / sample_rate

    onset = int(rng.integers(margin, num_samples - margin - wave.size + 1))
    clip = np.zeros(num_samples, dtype=np.float64)
    clip[onset : onset + wave.size] = wave
    clip = _band_limit(clip, sample_rate, speaker.lowpass_hz, speaker.highpass_hz)
    active = clip[onset : onset + wave.size]
    peak = 10 ** (rng.uniform(*peak_dbfs) / 20)
    clip *= peak / max(float(np.max(np.abs(active))), 1e-9)
    signal_rms = float(np.sqrt(np.mean(clip[onset : onset + wave.size] ** 2)))
    colour = NOISE_COLOURS[int(rng.integers(len(NOISE_COLOURS)))]
    snr = float(rng.uniform(*snr_db))
    clip += coloured_noise(num_samples, colour, rng) * signal_rms / 10 ** (snr / 20)
    top = float(np.max(np.abs(clip)))
    if top > 0.99:
        clip *= 0.99 / top
    info = ClipInfo(rate, pitch, pitch_range, punctuation, onset / sample_rate, word_seconds,
                    float(min(peak, 0.99)), snr, colour, sped_up, cropped)
    return clip.astype(np.float32), info


# ---------------------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------------------


@dataclass
class SynthSummary:
    """What :func:`generate_corpus` wrote (also saved, with more detail, as synth_info.json)."""

    out: Path
    words: list[str]
    seed: int
    sample_rate: int
    clip_seconds: float
    speakers: int
    clips_per_speaker: int
    clips: int
    clips_per_word: dict[str, int]
    speakers_per_split: dict[str, int]
    clips_per_split: dict[str, int]
    split_rule: str
    sped_up: int
    cropped: int
    seconds: float
    clips_per_second: float
    deterministic: bool
    accents: list[str] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)


def parse_words(text: str | Sequence[str]) -> list[str]:
    """A comma list (or list) of words -> checked words usable as folder names; else ConfigError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    words = [str(w).strip() for w in items if str(w).strip()]
    if not words:
        raise ConfigError("the word list is empty; give --vocab scd10|scd30 or --words yes,no,...")
    bad = [w for w in words if not _WORD_RE.match(w)]
    if bad:
        raise ConfigError(f"cannot use {bad[0]!r} as a word: words are letters, digits, spaces, ' and - (they name folders)")
    dupes = sorted({w for w in words if words.count(w) > 1})
    if dupes:
        raise ConfigError(f"the word list repeats {', '.join(dupes)}")
    return words


def resolve_vocab(vocab: str) -> list[str]:
    """``scd10``/``scd30`` -> its word list in class order; anything else is a ConfigError."""
    key = vocab.strip().lower()
    if key not in VOCABULARIES:
        raise ConfigError(f"unknown vocabulary {vocab!r}; use one of {', '.join(VOCABULARIES)} or --words a,b,c")
    return list(VOCABULARIES[key])


def _check_subset(asked: Sequence[str] | None, available: Sequence[str], what: str) -> list[str]:
    if asked is None:
        return list(available)
    asked = [a.strip() for a in asked if a.strip()]
    missing = [a for a in asked if a not in available]
    if missing or not asked:
        raise ConfigError(f"unknown {what} {', '.join(missing) or '(none given)'}; available: {', '.join(available)}")
    return asked


def _prepare_output(out: Path, overwrite: bool) -> Path:
    """Check the target folder and return a fresh sibling folder to build the corpus in."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out}: the output folder exists and is not empty; choose another --out or pass --overwrite")
    if out.is_dir() and overwrite and any(out.iterdir()) and not (out / "synth_info.json").is_file():
        raise DataError(f"{out}: not a corpus made by core.data.synth (no synth_info.json); refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def _commit_output(staging: Path, out: Path) -> None:
    """Move the finished corpus into place; an old corpus is replaced only once the new one is complete."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _render_speaker(args: tuple) -> list[tuple[str, str, bool, bool]]:
    """Render and write every clip of one speaker (worker entry point); return (word, name, sped_up, cropped)."""
    root, words, speaker, clips_per_speaker, seed, sample_rate, clip_seconds, snr_db = args
    synth = Synthesizer()
    done = []
    for word in words:
        for n in range(clips_per_speaker):
            clip, info = render_clip(synth, word, speaker, n, seed, sample_rate, clip_seconds, snr_db)
            name = f"{speaker.speaker_id}_nohash_{n}.wav"
            write_wav(Path(root) / word / name, clip, sample_rate)
            done.append((word, name, info.sped_up, info.cropped))
    return done


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def generate_corpus(
    out: str | os.PathLike,
    words: Sequence[str] | str = "scd10",
    speakers: int | None = None,
    clips_per_speaker: int | None = None,
    clips_per_word: int | None = None,
    seed: int = 0,
    sample_rate: int = 16000,
    clip_seconds: float = 1.0,
    *,
    accents: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split_by: str = "family",
    snr_db: tuple[float, float] = (20.0, 40.0),
    workers: int = 1,
    overwrite: bool = False,
    progress: bool | None = None,
    command: str | None = None,
) -> SynthSummary:
    """Write a Speech Commands-layout corpus of synthetic speakers to ``out`` and summarise it.

    ``words`` is ``scd10``, ``scd30``, a comma list or a list. Give ``speakers`` and/or
    ``clips_per_word``: without ``speakers``, speakers = ceil(clips_per_word /
    clips_per_speaker); with both, clips_per_speaker = ceil(clips_per_word / speakers).
    The corpus is built in a sibling folder and moved into place when complete.
    """
    from core.runtime import progress_bar, write_json

    started = time.perf_counter()
    out = Path(out)
    if isinstance(words, str):
        words = resolve_vocab(words) if words.strip().lower() in VOCABULARIES else parse_words(words)
    else:
        words = parse_words(words)
    vocabulary = next((k for k, v in VOCABULARIES.items() if v == list(words)), None)
    if speakers is not None and clips_per_word is not None and clips_per_speaker is not None:
        raise ConfigError("give at most two of --speakers, --clips-per-speaker and --clips-per-word")
    if clips_per_word is not None and clips_per_word < 1:
        raise ConfigError(f"--clips-per-word must be at least 1, got {clips_per_word}")
    if clips_per_speaker is not None and clips_per_speaker < 1:
        raise ConfigError(f"--clips-per-speaker must be at least 1, got {clips_per_speaker}")
    if speakers is None:
        clips_per_speaker = clips_per_speaker or 2
        speakers = math.ceil((clips_per_word if clips_per_word is not None else 200) / clips_per_speaker)
    elif clips_per_speaker is None:
        clips_per_speaker = math.ceil(clips_per_word / speakers) if clips_per_word is not None else 2
    if sample_rate < 4000 or sample_rate > 48000:
        raise ConfigError(f"--sample-rate {sample_rate} is outside 4000-48000 Hz")
    if not 0.25 <= clip_seconds <= 10:
        raise ConfigError(f"clip length {clip_seconds} s is outside 0.25-10 s")
    low, high = snr_db
    if not low <= high:
        raise ConfigError(f"SNR range {low}-{high} dB is empty")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")

    synth = Synthesizer()
    accents = _check_subset(accents, synth.voices(), "accent(s)")
    variants = _check_subset(variants, synth.all_variants() if variants is not None else synth.variants(), "variant(s)")
    chosen = sample_speakers(speakers, seed, accents, variants)
    split_of, rule = assign_splits(chosen, seed, validation_fraction, test_fraction, split_by)

    staging = _prepare_output(out, overwrite)
    import torch

    threads = torch.get_num_threads()
    # Resampling one short clip is a few small tensor ops: extra intra-op threads only add
    # wake-up and spin costs (hundreds of ms on a busy machine). Restored on return.
    torch.set_num_threads(1)
    try:
        for word in words:
            (staging / word).mkdir()
        jobs = [(str(staging), list(words), s, clips_per_speaker, seed, sample_rate, clip_seconds, (low, high)) for s in chosen]
        results: list[tuple[str, str, bool, bool]] = []
        bar = progress_bar(len(jobs) * len(words) * clips_per_speaker, "synthesising", progress)
        try:
            if workers == 1:
                for job in jobs:
                    part = _render_speaker(job)
                    results += part
                    bar.update(len(part))
            else:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                context = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
                    for part in pool.map(_render_speaker, jobs, chunksize=max(1, len(jobs) // (workers * 8))):
                        results += part
                        bar.update(len(part))
        finally:
            bar.close()

        noise_rng_seed = [seed % 2**32, _stable_int("background") % 2**32]
        noise_dir = staging / NOISE_DIR
        for i, (name, (colour, seconds)) in enumerate(NOISE_FILES.items()):
            rng = np.random.default_rng(noise_rng_seed + [i])
            noise = coloured_noise(int(round(seconds * sample_rate)), colour, rng) * 0.1
            write_wav(noise_dir / f"{name}.wav", np.clip(noise, -0.99, 0.99), sample_rate)

        lists = {"validation": [], "test": []}
        clips_per_split = {"train": 0, "validation": 0, "test": 0}
        for word, name, _, _ in sorted(results):
            split = split_of[name.split("_nohash_")[0]]
            clips_per_split[split] += 1
            if split in lists:
                lists[split].append(f"{word}/{name}")
        (staging / "validation_list.txt").write_text("".join(f"{p}\n" for p in lists["validation"]))
        (staging / "testing_list.txt").write_text("".join(f"{p}\n" for p in lists["test"]))
        speaker_table = {
            s.speaker_id: {**s.as_dict(), "gender": s.gender, "family": s.family, "split": split_of[s.speaker_id]}
            for s in chosen
        }
        (staging / "speakers.json").write_text(json.dumps(speaker_table, indent=2, sort_keys=True) + "\n")

        seconds = time.perf_counter() - started
        clips_per_word_done = {w: sum(1 for r in results if r[0] == w) for w in words}
        speakers_per_split = {k: sum(1 for s in chosen if split_of[s.speaker_id] == k) for k in ("train", "validation", "test")}
        summary = SynthSummary(
            out=out, words=list(words), seed=seed, sample_rate=sample_rate, clip_seconds=clip_seconds,
            speakers=len(chosen), clips_per_speaker=clips_per_speaker, clips=len(results),
            clips_per_word=clips_per_word_done, speakers_per_split=speakers_per_split,
            clips_per_split=clips_per_split, split_rule=rule,
            sped_up=sum(1 for r in results if r[2]), cropped=sum(1 for r in results if r[3]),
            seconds=round(seconds, 3), clips_per_second=round(len(results) / seconds, 1) if seconds > 0 else 0.0,
            deterministic=synth.deterministic, accents=list(accents),
            variants=sorted({s.variant for s in chosen}),
        )
        info = {
            "generator": "core.data.synth",
            "generator_version": GENERATOR_VERSION,
            "command": command,
            "vocabulary": vocabulary or "custom",
            "words": list(words),
            "seed": seed,
            "sample_rate": sample_rate,
            "clip_seconds": clip_seconds,
            "clip_samples": int(round(clip_seconds * sample_rate)),
            "speakers": len(chosen),
            "clips_per_speaker": clips_per_speaker,
            "clips": len(results),
            "clips_per_word": clips_per_word_done,
            "split_rule": rule,
            "validation_fraction": validation_fraction,
            "test_fraction": test_fraction,
            "speakers_per_split": speakers_per_split,
            "clips_per_split": clips_per_split,
            "speakers_per_gender": {g: sum(1 for s in chosen if s.gender == g) for g in sorted({s.gender for s in chosen})},
            "sped_up": summary.sped_up,
            "cropped": summary.cropped,
            "snr_db": [low, high],
            "noise_colours": list(NOISE_COLOURS),
            "background_noise": {f"{name}.wav": {"colour": c, "seconds": s} for name, (c, s) in NOISE_FILES.items()},
            "accents": list(accents),
            "variants_available": list(variants),
            "variants_used": summary.variants,
            "rates_wpm": list(RATES),
            "pitches": list(PITCHES),
            "pitch_ranges": list(PITCH_RANGES),
            "espeak_sample_rate": synth.sample_rate,
            "deterministic": synth.deterministic,
            "workers": workers,
            "seconds": summary.seconds,
            "clips_per_second": summary.clips_per_second,
            "libraries": library_versions(),
            "cpu": cpu_model(),
            "content_sha256": corpus_digest(staging),
        }
        write_json(staging / "synth_info.json", info)
        _commit_output(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads)
    log.debug("%s: %d clips of %d words by %d speakers (%d train / %d validation / %d test) in %.1f s, %.0f clips/s",
             out, summary.clips, len(words), summary.speakers, speakers_per_split["train"],
             speakers_per_split["validation"], speakers_per_split["test"], summary.seconds, summary.clips_per_second)
    return summary


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def _parse_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX (e.g. 20,40), got {text!r}") from None
    return low, high


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``python -m core.data.synth``."""
    parser = argparse.ArgumentParser(
        prog="python -m core.data.synth",
        description=(
            "Write an offline speech-command corpus made with espeak-ng, in the Google Speech "
            "Commands layout: <out>/<word>/<speaker>_nohash_<n>.wav (1 s, 16-bit mono), "
            "validation_list.txt and testing_list.txt (speaker-disjoint; held-out speakers use "
            "voice families never heard in training), _background_noise_/ (white, pink, brown "
            "noise), speakers.json and synth_info.json. The same arguments and --seed give "
            "byte-identical WAV files with the same libraries on the same CPU model (MKL's kernels "
            "can change the last bits on another); synth_info.json records the library versions, "
            "the CPU model and content_sha256, a digest of every file, to check a regenerated corpus against."
        ),
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--vocab", help="scd10 (default: yes no up down left right on off stop go) or scd30 (the 30 words of Speech Commands v0.01)")
    what.add_argument("--words", help="comma-separated words instead of a vocabulary, e.g. yes,no,maybe")
    parser.add_argument("--out", type=Path, help="output folder; must not exist or be empty (see --overwrite)")
    parser.add_argument("--speakers", type=int, help="number of synthetic speakers (default: from --clips-per-word)")
    parser.add_argument("--clips-per-speaker", type=int, help="utterances of each word per speaker (default 2)")
    parser.add_argument("--clips-per-word", type=int,
                        help="clips per word, about; without --speakers, speakers = ceil(N / clips-per-speaker) (default 200)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="output sample rate in Hz (default 16000)")
    parser.add_argument("--clip-seconds", type=float, default=1.0, help="clip length in seconds (default 1.0)")
    parser.add_argument("--snr-db", type=_parse_range, default=(20.0, 40.0), metavar="MIN,MAX",
                        help="range of the per-clip signal-to-noise ratio of the added coloured noise (default 20,40)")
    parser.add_argument("--accents", help="comma-separated espeak-ng English voices to use (default: all; see --list-voices)")
    parser.add_argument("--variants", help="comma-separated voice variants to use (default: the curated human-sounding set)")
    parser.add_argument("--validation-fraction", type=float, default=0.1, help="share of speakers held out for validation (default 0.1)")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="share of speakers held out for testing (default 0.1)")
    parser.add_argument("--split-by", choices=("family", "speaker"), default="family",
                        help="hold out whole voice families (default) or just speakers")
    parser.add_argument("--workers", type=int, default=1, help="processes that synthesise in parallel (default 1); output is identical")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing corpus made by this command in --out")
    parser.add_argument("--list-voices", action="store_true", help="print the English voices and variants found, then exit")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); the same seed gives the same files")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="accepted like every command's; synthesis always runs on the CPU")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: only on a terminal)")
    return parser


def corpus_digest(root: Path) -> str:
    """SHA-256 over every file of a corpus but ``synth_info.json`` (relative path and bytes, in path
    order): equal digests mean a regenerated corpus is the one an earlier result was made on."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "synth_info.json"):
        h.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries the generated bytes depend on (espeak-ng's loader, numpy, torch, torchaudio)."""
    from importlib import metadata

    versions = {}
    for name in ("espeakng-loader", "numpy", "torch", "torchaudio"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m core.data.synth``: parse arguments, write the corpus, print a summary line."""
    args = build_parser().parse_args(argv)
    if args.list_voices:
        synth = Synthesizer()
        print("accents used:   ", " ".join(synth.voices()))
        print("accents found:  ", " ".join(synth.all_english_voices()))
        print("variants used:  ", " ".join(synth.variants()))
        print("variants found: ", " ".join(synth.all_variants()))
        print("deterministic:  ", synth.deterministic)
        return 0
    if args.out is None:
        raise ConfigError("--out DIR is required (the folder to write the corpus to)")
    if args.words is not None:
        words = parse_words(args.words)
    else:
        words = resolve_vocab(args.vocab or "scd10")
    command = "python -m core.data.synth " + " ".join(sys.argv[1:] if argv is None else list(argv))
    summary = generate_corpus(
        args.out, words,
        speakers=args.speakers, clips_per_speaker=args.clips_per_speaker, clips_per_word=args.clips_per_word,
        seed=args.seed, sample_rate=args.sample_rate, clip_seconds=args.clip_seconds,
        accents=args.accents.split(",") if args.accents else None,
        variants=args.variants.split(",") if args.variants else None,
        validation_fraction=args.validation_fraction, test_fraction=args.test_fraction,
        split_by=args.split_by, snr_db=args.snr_db, workers=args.workers, overwrite=args.overwrite,
        progress=args.progress, command=command.strip(),
    )
    print(
        f"{summary.out}: {summary.clips} clips, {len(summary.words)} words, {summary.speakers} speakers "
        f"({summary.speakers_per_split['train']} train, {summary.speakers_per_split['validation']} validation, "
        f"{summary.speakers_per_split['test']} test), {summary.clips_per_second:.0f} clips/s"
        + (f", {summary.sped_up} sped up" if summary.sped_up else "")
        + (f", {summary.cropped} cropped" if summary.cropped else "")
    )
    return 0


if __name__ == "__main__":
    from core.runtime import run_command

    sys.exit(run_command(main))
