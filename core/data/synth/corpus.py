"""Write a whole corpus: plan the speakers, render every clip (in parallel if asked), add the lists,
the background noise, ``speakers.json`` and ``synth_info.json``, and move it into place when complete.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from core.audio import write_wav
from core.data.synth.clip import render_clip
from core.data.synth.dsp import NOISE_COLOURS, coloured_noise
from core.data.synth.espeak import Synthesizer
from core.data.synth.output import commit_output, corpus_digest, library_versions, prepare_output
from core.data.synth.voices import (
    PITCH_RANGES,
    PITCHES,
    RATES,
    SpeakerConfig,
    assign_splits,
    sample_speakers,
    stable_int,
)
from core.data.synth.words import VOCABULARIES, normalise_words
from core.errors import ConfigError
from core.runtime import cpu_model, progress_bar, write_json

__all__ = [
    "GENERATOR_VERSION",
    "NOISE_FILES",
    "NOISE_DIR",
    "SynthSummary",
    "generate_corpus",
]

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1.0"

#: Background-noise files written to ``_background_noise_``: name -> (colour, seconds).
NOISE_FILES: dict[str, tuple[str, float]] = {
    "white_noise": ("white", 20.0),
    "pink_noise": ("pink", 25.0),
    "brown_noise": ("brown", 15.0),
}
NOISE_DIR = "_background_noise_"

_Result = tuple[str, str, bool, bool]  # (word, file name, sped up, cropped) of one written clip


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


@dataclass(frozen=True)
class _Plan:
    """Everything decided before the first clip: words, speakers, splits and clip settings."""

    words: list[str]
    seed: int
    sample_rate: int
    clip_seconds: float
    snr_db: tuple[float, float]
    clips_per_speaker: int
    speakers: list[SpeakerConfig]
    split_of: dict[str, str]
    split_rule: str
    accents: list[str]
    variants: list[str]


class _SpeakerJob(NamedTuple):
    """One worker task: every clip of one speaker (picklable for spawned processes)."""

    root: str
    words: list[str]
    speaker: SpeakerConfig
    clips_per_speaker: int
    seed: int
    sample_rate: int
    clip_seconds: float
    snr_db: tuple[float, float]


# ---------------------------------------------------------------------------------------
# Checking and planning
# ---------------------------------------------------------------------------------------


def _speaker_counts(speakers: int | None, clips_per_speaker: int | None, clips_per_word: int | None) -> tuple[int, int]:
    """(speakers, clips per speaker) from at most two of the three counts; ConfigError otherwise."""
    if speakers is not None and clips_per_word is not None and clips_per_speaker is not None:
        raise ConfigError("give at most two of --speakers, --clips-per-speaker and --clips-per-word")
    if clips_per_word is not None and clips_per_word < 1:
        raise ConfigError(f"--clips-per-word must be at least 1, got {clips_per_word}")
    if clips_per_speaker is not None and clips_per_speaker < 1:
        raise ConfigError(f"--clips-per-speaker must be at least 1, got {clips_per_speaker}")
    if speakers is not None and speakers < 1:
        raise ConfigError(f"--speakers must be at least 1, got {speakers}")
    if speakers is None:
        clips_per_speaker = clips_per_speaker or 2
        speakers = math.ceil((clips_per_word if clips_per_word is not None else 200) / clips_per_speaker)
    elif clips_per_speaker is None:
        clips_per_speaker = math.ceil(clips_per_word / speakers) if clips_per_word is not None else 2
    return speakers, clips_per_speaker


#: The per-clip SNR range a corpus may ask for, in dB (beyond it the noise is inaudible or all there is).
SNR_DB = (-30.0, 120.0)


def _check_settings(sample_rate: int, clip_seconds: float, snr_db: tuple[float, float], workers: int) -> None:
    """ConfigError for an out-of-range sample rate, clip length, SNR range or worker count."""
    if sample_rate < 4000 or sample_rate > 48000:
        raise ConfigError(f"--sample-rate {sample_rate} is outside 4000-48000 Hz")
    if not 0.25 <= clip_seconds <= 10:
        raise ConfigError(f"clip length {clip_seconds} s is outside 0.25-10 s")
    low, high = snr_db
    if not (SNR_DB[0] <= low <= SNR_DB[1] and SNR_DB[0] <= high <= SNR_DB[1]):  # nan and inf fail too
        raise ConfigError(f"--snr-db must be within {SNR_DB[0]:g},{SNR_DB[1]:g} dB, got {low},{high}")
    if not low <= high:
        raise ConfigError(f"SNR range {low}-{high} dB is empty")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")


def _check_subset(asked: Sequence[str] | None, available: Sequence[str], what: str) -> list[str]:
    """The asked names (all of ``available`` when None); ConfigError for an unknown one or none."""
    if asked is None:
        return list(available)
    asked = [a.strip() for a in asked if a.strip()]
    missing = [a for a in asked if a not in available]
    if missing or not asked:
        raise ConfigError(f"unknown {what} {', '.join(missing) or '(none given)'}; available: {', '.join(available)}")
    return asked


# ---------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------


def _render_speaker(job: _SpeakerJob) -> list[_Result]:
    """Render and write every clip of one speaker (worker entry point); return (word, name, sped_up, cropped)."""
    synth = Synthesizer()
    done = []
    for word in job.words:
        for n in range(job.clips_per_speaker):
            clip, info = render_clip(
                synth, word, job.speaker, n, job.seed, job.sample_rate, job.clip_seconds, job.snr_db
            )
            name = f"{job.speaker.speaker_id}_nohash_{n}.wav"
            write_wav(Path(job.root) / word / name, clip, job.sample_rate)
            done.append((word, name, info.sped_up, info.cropped))
    return done


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _render_all(staging: Path, plan: _Plan, workers: int, progress: bool | None) -> list[_Result]:
    """Write every clip under ``staging/<word>/``, speaker by speaker, in this process or ``workers`` spawned ones."""
    for word in plan.words:
        (staging / word).mkdir()
    jobs = [
        _SpeakerJob(
            str(staging),
            list(plan.words),
            s,
            plan.clips_per_speaker,
            plan.seed,
            plan.sample_rate,
            plan.clip_seconds,
            plan.snr_db,
        )
        for s in plan.speakers
    ]
    results: list[_Result] = []
    bar = progress_bar(len(jobs) * len(plan.words) * plan.clips_per_speaker, "synthesising", progress)
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
    return results


# ---------------------------------------------------------------------------------------
# The files beside the clips
# ---------------------------------------------------------------------------------------


def _write_background_noise(staging: Path, seed: int, sample_rate: int) -> None:
    """The :data:`NOISE_FILES` under ``_background_noise_/``, seeded from ``seed`` alone."""
    noise_rng_seed = [seed % 2**32, stable_int("background") % 2**32]
    noise_dir = staging / NOISE_DIR
    for i, (name, (colour, seconds)) in enumerate(NOISE_FILES.items()):
        rng = np.random.default_rng(noise_rng_seed + [i])
        noise = coloured_noise(int(round(seconds * sample_rate)), colour, rng) * 0.1
        write_wav(noise_dir / f"{name}.wav", np.clip(noise, -0.99, 0.99), sample_rate)


def _write_split_lists(staging: Path, results: list[_Result], split_of: dict[str, str]) -> dict[str, int]:
    """``validation_list.txt`` and ``testing_list.txt`` (sorted ``word/file`` lines); return clips per split."""
    lists: dict[str, list[str]] = {"validation": [], "test": []}
    clips_per_split = {"train": 0, "validation": 0, "test": 0}
    for word, name, _, _ in sorted(results):
        split = split_of[name.split("_nohash_")[0]]
        clips_per_split[split] += 1
        if split in lists:
            lists[split].append(f"{word}/{name}")
    (staging / "validation_list.txt").write_text("".join(f"{p}\n" for p in lists["validation"]))
    (staging / "testing_list.txt").write_text("".join(f"{p}\n" for p in lists["test"]))
    return clips_per_split


def _write_speaker_table(staging: Path, speakers: list[SpeakerConfig], split_of: dict[str, str]) -> None:
    """``speakers.json``: speaker id -> configuration, gender, family and split."""
    speaker_table = {
        s.speaker_id: {**s.as_dict(), "gender": s.gender, "family": s.family, "split": split_of[s.speaker_id]}
        for s in speakers
    }
    (staging / "speakers.json").write_text(json.dumps(speaker_table, indent=2, sort_keys=True) + "\n")


def _summarise(
    out: Path, plan: _Plan, results: list[_Result], clips_per_split: dict[str, int], seconds: float, deterministic: bool
) -> SynthSummary:
    """The :class:`SynthSummary` of a rendered corpus."""
    clips_per_word = {w: sum(1 for r in results if r[0] == w) for w in plan.words}
    speakers_per_split = {
        k: sum(1 for s in plan.speakers if plan.split_of[s.speaker_id] == k) for k in ("train", "validation", "test")
    }
    return SynthSummary(
        out=out,
        words=list(plan.words),
        seed=plan.seed,
        sample_rate=plan.sample_rate,
        clip_seconds=plan.clip_seconds,
        speakers=len(plan.speakers),
        clips_per_speaker=plan.clips_per_speaker,
        clips=len(results),
        clips_per_word=clips_per_word,
        speakers_per_split=speakers_per_split,
        clips_per_split=clips_per_split,
        split_rule=plan.split_rule,
        sped_up=sum(1 for r in results if r[2]),
        cropped=sum(1 for r in results if r[3]),
        seconds=round(seconds, 3),
        clips_per_second=round(len(results) / seconds, 1) if seconds > 0 else 0.0,
        deterministic=deterministic,
        accents=list(plan.accents),
        variants=sorted({s.variant for s in plan.speakers}),
    )


def _corpus_info(
    staging: Path,
    plan: _Plan,
    summary: SynthSummary,
    synth: Synthesizer,
    *,
    command: str | None,
    vocabulary: str | None,
    validation_fraction: float,
    test_fraction: float,
    workers: int,
) -> dict[str, Any]:
    """The content of ``synth_info.json``: settings, counts, library versions, CPU model and content digest."""
    low, high = plan.snr_db
    return {
        "generator": "core.data.synth",
        "generator_version": GENERATOR_VERSION,
        "command": command,
        "vocabulary": vocabulary or "custom",
        "words": list(plan.words),
        "seed": plan.seed,
        "sample_rate": plan.sample_rate,
        "clip_seconds": plan.clip_seconds,
        "clip_samples": int(round(plan.clip_seconds * plan.sample_rate)),
        "speakers": len(plan.speakers),
        "clips_per_speaker": plan.clips_per_speaker,
        "clips": summary.clips,
        "clips_per_word": summary.clips_per_word,
        "split_rule": plan.split_rule,
        "validation_fraction": validation_fraction,
        "test_fraction": test_fraction,
        "speakers_per_split": summary.speakers_per_split,
        "clips_per_split": summary.clips_per_split,
        "speakers_per_gender": {
            g: sum(1 for s in plan.speakers if s.gender == g) for g in sorted({s.gender for s in plan.speakers})
        },
        "sped_up": summary.sped_up,
        "cropped": summary.cropped,
        "snr_db": [low, high],
        "noise_colours": list(NOISE_COLOURS),
        "background_noise": {f"{name}.wav": {"colour": c, "seconds": s} for name, (c, s) in NOISE_FILES.items()},
        "accents": list(plan.accents),
        "variants_available": list(plan.variants),
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


# ---------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------


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
    started = time.perf_counter()
    out = Path(out)
    words = normalise_words(words)
    vocabulary = next((k for k, v in VOCABULARIES.items() if v == list(words)), None)
    speakers, clips_per_speaker = _speaker_counts(speakers, clips_per_speaker, clips_per_word)
    _check_settings(sample_rate, clip_seconds, snr_db, workers)

    synth = Synthesizer()
    accents = _check_subset(accents, synth.voices(), "accent(s)")
    variants = _check_subset(variants, synth.all_variants() if variants is not None else synth.variants(), "variant(s)")
    chosen = sample_speakers(speakers, seed, accents, variants)
    split_of, rule = assign_splits(chosen, seed, validation_fraction, test_fraction, split_by)
    low, high = snr_db
    plan = _Plan(
        list(words),
        seed,
        sample_rate,
        clip_seconds,
        (low, high),
        clips_per_speaker,
        chosen,
        split_of,
        rule,
        list(accents),
        list(variants),
    )

    staging = prepare_output(out, overwrite)
    import torch

    threads = torch.get_num_threads()
    # Resampling one short clip is a few small tensor ops: extra intra-op threads only add
    # wake-up and spin costs (hundreds of ms on a busy machine). Restored on return.
    torch.set_num_threads(1)
    try:
        results = _render_all(staging, plan, workers, progress)
        _write_background_noise(staging, seed, sample_rate)
        clips_per_split = _write_split_lists(staging, results, split_of)
        _write_speaker_table(staging, chosen, split_of)
        summary = _summarise(out, plan, results, clips_per_split, time.perf_counter() - started, synth.deterministic)
        info = _corpus_info(
            staging,
            plan,
            summary,
            synth,
            command=command,
            vocabulary=vocabulary,
            validation_fraction=validation_fraction,
            test_fraction=test_fraction,
            workers=workers,
        )
        write_json(staging / "synth_info.json", info)
        commit_output(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads)
    log.debug(
        "%s: %d clips of %d words by %d speakers (%d train / %d validation / %d test) in %.1f s, %.0f clips/s",
        out,
        summary.clips,
        len(words),
        summary.speakers,
        summary.speakers_per_split["train"],
        summary.speakers_per_split["validation"],
        summary.speakers_per_split["test"],
        summary.seconds,
        summary.clips_per_second,
    )
    return summary
