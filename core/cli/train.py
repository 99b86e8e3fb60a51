"""``python -m core.train``: train a clean or backdoored model and save it as a checkpoint.

Parses the options (the training ones are :class:`core.training.TrainConfig`'s fields), checks
them before any data loads, calls :func:`core.training.train_model` and prints one line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from core import models
from core.attacks import get_attack, list_attacks, parse_attack_args
from core.augment import describe as describe_augment
from core.checkpoint import save_checkpoint
from core.cli.common import add_data_arguments, add_front_end_arguments, front_end_from_args, load_from_args
from core.errors import ConfigError
from core.metrics import percent
from core.options import add_arguments, from_namespace
from core.runtime import add_common_arguments, parse_args, write_json
from core.training import TrainConfig, train_model
from core.validate import output_path

__all__ = ["build_parser", "config_from_args", "main"]

log = logging.getLogger("core.train")


def build_parser(config: type[TrainConfig] = TrainConfig) -> argparse.ArgumentParser:
    """``python -m core.train``'s options; the training ones are ``config``'s fields (:mod:`core.options`)."""
    p = argparse.ArgumentParser(
        prog="python -m core.train",
        description="Train a clean or backdoored keyword-spotting model and save it as a .safetensors checkpoint.",
        epilog="Example: python -m core.train --data ../shared/data/fsdd --model resnet --attack badnets "
        "--out resnet_badnets.safetensors --report report.json",
    )
    add_data_arguments(p)
    p.add_argument(
        "--model", default="resnet", help=f"architecture (default resnet); one of: {', '.join(models.list_models())}"
    )
    add_front_end_arguments(p)
    p.add_argument("--attack", help=f"backdoor the model with this attack; one of: {', '.join(list_attacks())}")
    p.add_argument(
        "--attack-arg",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="attack parameter, e.g. target=2, poison_rate=0.1 (repeatable; see python -m core.attacks show NAME)",
    )
    add_arguments(p, config)
    output_path(p, "--out", required=True, suffixes=(".safetensors",), help="checkpoint to write (.safetensors)")
    output_path(p, "--report", help="JSON report to write")
    add_common_arguments(p)
    return p


def config_from_args(args: argparse.Namespace, config: type[TrainConfig] = TrainConfig) -> TrainConfig:
    """The training settings the options of :func:`build_parser` hold (checked here, before any data loads)."""
    return config(model=args.model, seed=args.seed, device=args.device, **from_namespace(args, config))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    out = Path(args.out)  # --out, --report and --init-from were checked by parse_args (core.validate)
    fe = front_end_from_args(args)
    attack = None
    if args.attack:
        params = parse_attack_args(args.attack_arg)
        params.setdefault("seed", str(args.seed))
        attack = get_attack(args.attack, sample_rate=args.sample_rate, **params)
    elif args.attack_arg:
        raise ConfigError("--attack-arg given without --attack")
    config = config_from_args(args)  # checked before the data loads
    data = load_from_args(args, args.sample_rate)
    log.info(
        "training %s on %d clips (%s), %s, augmentation: %s",
        config.model,
        len(data.splits["train"]),
        ", ".join(f"{k} {int(v.numel())}" for k, v in data.splits.items()),
        f"attack {attack.name}" if attack else "clean",
        describe_augment(config.augment),
    )
    result = train_model(data, config, attack, front_end=fe, show_progress=False if args.quiet else None)
    save_checkpoint(out, result.model, result.metadata)
    report = dict(
        result.report,
        command=" ".join(["python -m core.train", *(argv if argv is not None else sys.argv[1:])]),
        checkpoint=str(out),
    )
    if args.report:
        write_json(args.report, report)
    line = f"clean accuracy {percent(report['clean_accuracy'])}"
    if attack is not None:
        line += (
            f", attack success rate {percent(report['attack_success_rate'])}, robust accuracy "
            f"{percent(report['robust_accuracy'])}"
        )
    print(f"{line}; {report['seconds']:.1f} s on {report['device']}; wrote {out}")
    return 0
