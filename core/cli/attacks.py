"""``python -m core.attacks``: list the attacks, show one's parameters, write a triggered example WAV.

``example`` reads its clip in any format soundfile reads (WAV, FLAC, OGG/Vorbis, AIFF, ...), by content.
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Sequence

from core.attacks.base import get_attack, list_attacks, parse_attack_args
from core.errors import AttackError
from core.options import SEED_RANGE, SEED_TEXT, Range, fields_of, number
from core.runtime import parse_args
from core.validate import input_path, output_path

#: Sample rates and clip lengths ``example`` takes (the WAV reader's rates; triggers are made for clips of
#: one second, and a minute at the highest rate is 184 MB of samples).
SAMPLE_RATES = Range(1000, 768000)
CLIP_SECONDS = Range(1.0, 60.0)

__all__ = ["main"]


def _type_name(annotation: object) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "|".join(str(a) for a in typing.get_args(annotation))
    return getattr(annotation, "__name__", str(annotation)).replace("typing.", "")


def describe(name: str) -> str:
    """Every parameter of attack ``name`` with its type, default and meaning (the field's help)."""
    attacks = list_attacks()
    if name not in attacks:
        raise AttackError(f"unknown attack {name!r}; available: {', '.join(attacks)}")
    cls = attacks[name]
    lines = [
        f"{name}: {cls.summary}",
        f"domain: {cls.domain}" + ("" if cls.domain == "waveform" else " (nothing audible to play)"),
        "parameters:",
    ]
    for spec in fields_of(cls.Params):
        lines.append(
            f"  {spec.name:<12} {_type_name(spec.type):<16} default {spec.default!r}"
            + (f": {spec.help}" if spec.help else "")
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m core.attacks",
        description="Audio backdoor attacks: list them, show their parameters, or write a triggered copy of a clip.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every attack with a one-line summary")
    show = sub.add_parser("show", help="an attack's parameters, types and defaults")
    show.add_argument("name")
    ex = sub.add_parser("example", help="write a triggered copy of a clip")
    ex.add_argument("--attack", required=True)
    ex.add_argument("--attack-arg", action="append", metavar="KEY=VALUE", default=[])
    input_path(
        ex,
        "--clip",
        required=True,
        help="input clip: WAV, FLAC, OGG/Vorbis, AIFF or any format soundfile reads, recognised by content "
        "(mixed to mono, resampled, padded/cropped)",
    )
    output_path(ex, "--out", required=True, suffixes=(".wav",), help="output WAV")
    ex.add_argument(
        "--sample-rate",
        type=number(int, SAMPLE_RATES),
        default=16000,
        help="rate the attack runs at, 1000-768000 Hz (default 16000; ultrasonic needs 44100)",
    )
    ex.add_argument(
        "--seconds",
        type=number(float, CLIP_SECONDS),
        default=1.0,
        help=f"clip length in seconds, {CLIP_SECONDS.low:g}-{CLIP_SECONDS.high:g} (default 1)",
    )
    ex.add_argument(
        "--seed", type=number(int, SEED_RANGE, range_text=SEED_TEXT), default=0, help="random seed (default 0)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    if args.command == "list":
        for name, cls in list_attacks().items():
            print(f"{name:<24} {cls.summary}")
        return 0
    if args.command == "show":
        print(describe(args.name))
        return 0
    import torch

    from core.audio import load_clip, write_wav

    params = parse_attack_args(args.attack_arg)
    params.setdefault("seed", str(args.seed))
    attack = get_attack(args.attack, sample_rate=args.sample_rate, **params)
    if not attack.audible:
        raise AttackError(f"{attack.name} is a feature-domain trigger: there is nothing audible to write")
    clip = load_clip(args.clip, args.sample_rate, max(1, int(round(args.seconds * args.sample_rate))))
    try:
        triggered = attack.apply_test(torch.from_numpy(clip).unsqueeze(0), args.sample_rate)[0]
    except (RuntimeError, ValueError) as exc:  # a trigger that does not fit this clip
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AttackError(
            f"{attack.name} cannot be applied to a {args.seconds:g} s clip at {args.sample_rate} Hz ({reason})"
        ) from exc
    peak = float(triggered.abs().max())
    subtype = "FLOAT" if peak > 1.0 else "PCM_16"  # never clip a trigger that goes over full scale
    write_wav(args.out, triggered, args.sample_rate, subtype=subtype)
    print(
        f"wrote {args.out}: {attack.name} at {args.sample_rate} Hz, peak {peak:.3f}"
        + (" (32-bit float: over full scale)" if subtype == "FLOAT" else "")
    )
    return 0
