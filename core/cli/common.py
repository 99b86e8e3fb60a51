"""Options several commands share: the dataset, the feature front end, the attack to measure with."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from core.attacks import Attack, attack_from_dict, get_attack, list_attacks, parse_attack_args
from core.data import DATA_FORMATS, AudioSet, load_dataset
from core.errors import AttackError, ConfigError
from core.features import FrontEndConfig
from core.options import Range, number
from core.validate import input_path

#: Sample rates a command takes (the WAV reader's bounds).
SAMPLE_RATES = Range(1000, 768000)

__all__ = [
    "add_attack_override_arguments",
    "add_data_arguments",
    "add_front_end_arguments",
    "attack_for",
    "front_end_from_args",
    "load_from_args",
]


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The dataset options every command shares (``--data`` and how to read it)."""
    input_path(
        parser,
        "--data",
        required=True,
        kind="folder",
        help="dataset folder (Speech Commands layout or FSDD; clips in WAV, FLAC, OGG/Vorbis, AIFF or any "
        "format soundfile reads)",
    )
    parser.add_argument(
        "--data-format", choices=list(DATA_FORMATS), help="force the dataset kind instead of detecting it"
    )
    parser.add_argument(
        "--vocab",
        help="Speech Commands words: scd10, scd30, asc10, asc30 (Arabic Speech Commands) or a comma list "
        "(default: scd10 if present, else asc10 if present, else every word folder)",
    )
    parser.add_argument(
        "--fsdd-split",
        choices=["official", "speaker"],
        default="official",
        help="FSDD split: official (index 0-4 test) or speaker (held-out speakers) (default official)",
    )
    parser.add_argument(
        "--test-speakers", default="theo", help="FSDD speaker split: comma list of held-out speakers (default theo)"
    )
    parser.add_argument("--skip-bad", action="store_true", help="leave unreadable clips out instead of stopping")


def load_from_args(
    args: argparse.Namespace, sample_rate: int, num_samples: int | None = None, vocab: Sequence[str] | str | None = None
) -> AudioSet:
    """Load the dataset named by :func:`add_data_arguments` options at ``sample_rate``."""
    return load_dataset(
        args.data,
        data_format=args.data_format,
        vocab=vocab if vocab is not None else args.vocab,
        sample_rate=sample_rate,
        num_samples=num_samples,
        fsdd_split=args.fsdd_split,
        test_speakers=[s for s in args.test_speakers.split(",") if s],
        skip_bad=args.skip_bad,
    )


def add_front_end_arguments(p: argparse.ArgumentParser) -> None:
    """``--front-end``, ``--sample-rate``, ``--n-coeffs``, ``--n-fft``, ``--hop-length``, ``--n-mels``."""
    p.add_argument("--front-end", choices=["mfcc", "logmel"], default="mfcc", help="feature front end (default mfcc)")
    p.add_argument(
        "--sample-rate",
        type=number(int, SAMPLE_RATES),
        default=16000,
        help="model and data sample rate in Hz, 1000-768000 (default 16000)",
    )
    p.add_argument("--n-coeffs", type=number(int, "[1, 512]"), default=40, help="MFCC coefficients (default 40)")
    p.add_argument("--n-fft", type=number(int, "[2, 65536]"), default=400, help="FFT size (default 400)")
    p.add_argument("--hop-length", type=number(int, "[1, 65536]"), default=160, help="hop in samples (default 160)")
    p.add_argument("--n-mels", type=number(int, "[1, 512]"), default=80, help="mel bands (default 80)")


def front_end_from_args(args: argparse.Namespace) -> FrontEndConfig:
    """The front end the options of :func:`add_front_end_arguments` describe (a window longer than the
    one-second clip is refused here, naming the option, before any data loads)."""
    if args.n_fft // 2 >= args.sample_rate:
        raise ConfigError(
            f"--n-fft must be less than twice the clip length ({2 * args.sample_rate} samples at "
            f"--sample-rate {args.sample_rate}), got {args.n_fft}"
        )
    if args.hop_length > args.sample_rate:
        raise ConfigError(
            f"--hop-length must be at most the clip length ({args.sample_rate} samples), got {args.hop_length}"
        )
    return FrontEndConfig(
        kind=args.front_end,
        sample_rate=args.sample_rate,
        n_coeffs=args.n_coeffs,
        n_fft=args.n_fft,
        hop_length=args.hop_length,
        n_mels=args.n_mels,
    )


def add_attack_override_arguments(p: argparse.ArgumentParser) -> None:
    """``--attack``/``--attack-arg``: measure with another trigger than the checkpoint's record (see attack_for)."""
    p.add_argument(
        "--attack",
        help=f"attack to measure ASR with, overriding the checkpoint's record; one of: {', '.join(list_attacks())}",
    )
    p.add_argument(
        "--attack-arg", action="append", metavar="KEY=VALUE", default=[], help="attack parameter (repeatable)"
    )


def attack_for(args: argparse.Namespace, meta: dict[str, Any]) -> tuple[Attack | None, str]:
    """The attack to measure with: from --attack (a trigger that needs no training) or the checkpoint's record."""
    if args.attack:
        params = parse_attack_args(args.attack_arg)
        params.setdefault("seed", str(args.seed))
        attack = get_attack(args.attack, sample_rate=meta["sample_rate"], **params)
        if not attack.prepared:
            raise AttackError(
                f"{attack.name} learns its trigger during training; it can only be measured from the "
                "checkpoint's own record (leave out --attack)"
            )
        return attack, "--attack"
    recorded = meta["provenance"].get("attack")
    if recorded:
        return attack_from_dict(recorded, sample_rate=meta["sample_rate"]), "checkpoint metadata"
    return None, "none"
