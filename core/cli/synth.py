"""``python -m core.data.synth``: the corpus generator's options, --list-voices, and a one-line summary."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from core.data.synth.corpus import SNR_DB, generate_corpus
from core.data.synth.espeak import Synthesizer
from core.data.synth.words import parse_words, resolve_vocab
from core.errors import ConfigError
from core.options import SEED_RANGE, SEED_TEXT, Range, number
from core.runtime import parse_args
from core.validate import output_path

__all__ = ["build_parser", "main"]


def _parse_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX (e.g. 20,40), got {text!r}") from None
    if not all(SNR_DB[0] <= v <= SNR_DB[1] for v in (low, high)):  # nan and inf fail too
        raise argparse.ArgumentTypeError(f"must be within {SNR_DB[0]:g},{SNR_DB[1]:g} dB, got {text!r}")
    if low > high:
        raise argparse.ArgumentTypeError(f"must be MIN,MAX with MIN <= MAX, got {text!r}")
    return low, high


#: Counts: at least one; beyond these a corpus would take days (the sizes of Speech Commands are far below).
COUNT = Range(1, 100_000)


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
    what.add_argument(
        "--vocab",
        help="scd10 (default: yes no up down left right on off stop go), scd30 "
        "(the 30 words of Speech Commands v0.01), asc10 or asc30 (the Arabic Speech Commands' words, "
        "said in English)",
    )
    what.add_argument("--words", help="comma-separated words instead of a vocabulary, e.g. yes,no,maybe")
    output_path(parser, "--out", kind="folder", help="output folder; must not exist or be empty (see --overwrite)")
    parser.add_argument(
        "--speakers", type=number(int, COUNT), help="number of synthetic speakers (default: from --clips-per-word)"
    )
    parser.add_argument(
        "--clips-per-speaker", type=number(int, COUNT), help="utterances of each word per speaker (default 2)"
    )
    parser.add_argument(
        "--clips-per-word",
        type=number(int, COUNT),
        help="clips per word, about; without --speakers, speakers = ceil(N / clips-per-speaker) (default 200)",
    )
    parser.add_argument(
        "--sample-rate",
        type=number(int, "[4000, 48000]"),
        default=16000,
        help="output sample rate in Hz, 4000-48000 (default 16000)",
    )
    parser.add_argument(
        "--clip-seconds", type=number(float, "[0.25, 10]"), default=1.0, help="clip length in seconds (default 1.0)"
    )
    parser.add_argument(
        "--snr-db",
        type=_parse_range,
        default=(20.0, 40.0),
        metavar="MIN,MAX",
        help="range of the per-clip signal-to-noise ratio of the added coloured noise (default 20,40)",
    )
    parser.add_argument(
        "--accents", help="comma-separated espeak-ng English voices to use (default: all; see --list-voices)"
    )
    parser.add_argument(
        "--variants", help="comma-separated voice variants to use (default: the curated human-sounding set)"
    )
    parser.add_argument(
        "--validation-fraction",
        type=number(float, "[0, 1)"),
        default=0.1,
        help="share of speakers held out for validation (default 0.1)",
    )
    parser.add_argument(
        "--test-fraction",
        type=number(float, "[0, 1)"),
        default=0.1,
        help="share of speakers held out for testing (default 0.1)",
    )
    parser.add_argument(
        "--split-by",
        choices=("family", "speaker"),
        default="family",
        help="hold out whole voice families (default) or just speakers",
    )
    parser.add_argument(
        "--workers",
        type=number(int, "[1, 256]"),
        default=1,
        help="processes that synthesise in parallel (default 1); output is identical",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing corpus made by this command in --out"
    )
    parser.add_argument(
        "--list-voices", action="store_true", help="print the English voices and variants found, then exit"
    )
    parser.add_argument(
        "--seed",
        type=number(int, SEED_RANGE, range_text=SEED_TEXT),
        default=0,
        help="random seed, 0 to 2**64-1 (default 0); the same seed gives the same files",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="accepted like every command's; synthesis always runs on the CPU",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: only on a terminal)",
    )
    return parser


def _list_voices() -> int:
    """``--list-voices``: the English accents and variants used and found, and whether output is reproducible."""
    synth = Synthesizer()
    print("accents used:   ", " ".join(synth.voices()))
    print("accents found:  ", " ".join(synth.all_english_voices()))
    print("variants used:  ", " ".join(synth.variants()))
    print("variants found: ", " ".join(synth.all_variants()))
    print("deterministic:  ", synth.deterministic)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m core.data.synth``: parse arguments, write the corpus, print a summary line."""
    args = parse_args(build_parser(), argv)
    if args.list_voices:
        return _list_voices()
    if args.out is None:
        raise ConfigError("--out DIR is required (the folder to write the corpus to)")
    if args.words is not None:
        words = parse_words(args.words)
    else:
        words = resolve_vocab(args.vocab or "scd10")
    command = "python -m core.data.synth " + " ".join(sys.argv[1:] if argv is None else list(argv))
    summary = generate_corpus(
        Path(args.out),
        words,
        speakers=args.speakers,
        clips_per_speaker=args.clips_per_speaker,
        clips_per_word=args.clips_per_word,
        seed=args.seed,
        sample_rate=args.sample_rate,
        clip_seconds=args.clip_seconds,
        accents=args.accents.split(",") if args.accents else None,
        variants=args.variants.split(",") if args.variants else None,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
        split_by=args.split_by,
        snr_db=args.snr_db,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=args.progress,
        command=command.strip(),
    )
    print(
        f"{summary.out}: {summary.clips} clips, {len(summary.words)} words, {summary.speakers} speakers "
        f"({summary.speakers_per_split['train']} train, {summary.speakers_per_split['validation']} validation, "
        f"{summary.speakers_per_split['test']} test), {summary.clips_per_second:.0f} clips/s"
        + (f", {summary.sped_up} sped up" if summary.sped_up else "")
        + (f", {summary.cropped} cropped" if summary.cropped else "")
    )
    return 0
