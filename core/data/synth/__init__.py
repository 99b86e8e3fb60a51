"""An offline, speaker-structured speech-command corpus made with espeak-ng.

``python -m core.data.synth --vocab scd10 --clips-per-word 200 --out DIR`` writes the
Google Speech Commands layout (``<word>/<speaker>_nohash_<n>.wav``, ``validation_list.txt``,
``testing_list.txt``, ``_background_noise_/``) plus ``speakers.json`` and ``synth_info.json``.

A *speaker* is one voice configuration: English accent x voice variant x speaking rate x pitch
x pitch range, plus a per-speaker microphone band limit. Validation and test speakers are held
out by *voice family* (a variant and its near-clones), so that no test speaker shares a timbre
with a training speaker; accents are shared, as in real data.

Determinism: every clip is a pure function of (seed, word, speaker, n): the same arguments give
byte-identical WAV files, in any order and with any number of workers, on one CPU model
(:mod:`.espeak` resets espeak-ng's internal state before each word). Across CPU models the last
bits can differ: the resampling after espeak-ng runs through MKL-backed torch kernels whose code
path depends on the CPU (``MKL_CBWR=COMPATIBLE`` set before torch's first kernel changes the
bytes here, and the same command gave other digests on an AMD EPYC than on an Intel Xeon), so
``synth_info.json`` records the CPU model beside the libraries and the digest.

Modules: :mod:`.espeak` (all espeak-ng access), :mod:`.voices` (voice lists, speakers, splits),
:mod:`.dsp` (trimming, noise, band limit), :mod:`.clip` (one clip), :mod:`.words` (word lists),
:mod:`.corpus` (the whole corpus), :mod:`.output` (staging folder, digest);
the command line is :mod:`core.cli.synth`.
"""

from __future__ import annotations

from core.data.synth.clip import ClipInfo, render_clip
from core.data.synth.corpus import GENERATOR_VERSION, NOISE_DIR, NOISE_FILES, SynthSummary, generate_corpus
from core.data.synth.dsp import NOISE_COLOURS, coloured_noise, trim_silence
from core.data.synth.espeak import SUPPORTED_VERSIONS, SynthesisError, Synthesizer, UnsupportedEspeakVersion
from core.data.synth.output import corpus_digest, library_versions
from core.data.synth.voices import (
    ACCENTS,
    HIGHPASS_HZ,
    LOWPASS_HZ,
    PITCH_RANGES,
    PITCHES,
    RATES,
    VARIANTS,
    SpeakerConfig,
    assign_splits,
    sample_speakers,
    speaker_pool,
)
from core.data.synth.words import VOCABULARIES, parse_words, resolve_vocab

__all__ = [
    "VOCABULARIES",
    "GENERATOR_VERSION",
    "SUPPORTED_VERSIONS",
    "SynthesisError",
    "UnsupportedEspeakVersion",
    "Synthesizer",
    "SpeakerConfig",
    "SynthSummary",
    "ClipInfo",
    "NOISE_FILES",
    "NOISE_DIR",
    "NOISE_COLOURS",
    "ACCENTS",
    "VARIANTS",
    "RATES",
    "PITCHES",
    "PITCH_RANGES",
    "LOWPASS_HZ",
    "HIGHPASS_HZ",
    "speaker_pool",
    "sample_speakers",
    "assign_splits",
    "trim_silence",
    "coloured_noise",
    "render_clip",
    "parse_words",
    "resolve_vocab",
    "generate_corpus",
    "corpus_digest",
    "library_versions",
]
