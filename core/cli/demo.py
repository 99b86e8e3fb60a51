"""``python -m core.demo``: build (once) the demo workspace, or rebuild it and ship its model."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from core.demo import RECIPE, ensure_demo, write_shipped_info
from core.errors import GnftError
from core.options import number
from core.runtime import add_common_arguments, parse_args
from core.validate import output_path

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m core.demo",
        description="Build (once) the demo workspace: a synthetic SCD-10 corpus and a "
        "BadNets-backdoored smallcnn (the one shipped with the package), cached "
        "in the user data folder.",
    )
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="build again from scratch even if a demo is cached: the corpus, then the model trained "
        "with the demo recipe instead of the shipped one (a few minutes on a CPU)",
    )
    output_path(p, "--out", kind="folder", help="folder (default: the user data folder's demo/)")
    p.add_argument(
        "--clips-per-word",
        type=number(int, "[1, 100000]"),
        default=RECIPE["clips_per_word"],
        help=f"corpus size (default {RECIPE['clips_per_word']} clips per word)",
    )
    p.add_argument(
        "--epochs",
        type=number(int, "[1, 100000]"),
        default=None,
        help=f"train the model for this many epochs instead of using the shipped one (the recipe: "
        f"{RECIPE['clean_epochs']} clean + {RECIPE['poison_epochs']} poisoned)",
    )
    p.add_argument(
        "--write-asset",
        action="store_true",
        help="(maintainers) with --rebuild: copy the trained model into the package as the shipped "
        "demo model and write its JSON record",
    )
    add_common_arguments(p)
    args = parse_args(p, argv)
    if args.write_asset and not args.rebuild:
        raise GnftError("--write-asset needs --rebuild (it ships a freshly trained model)")
    device = "cpu" if args.device == "auto" else args.device
    started = time.perf_counter()
    demo = ensure_demo(
        args.out,
        rebuild=args.rebuild,
        clips_per_word=args.clips_per_word,
        epochs=args.epochs,
        seed=args.seed,
        device=device,
        train=True if args.rebuild else None,
    )
    if args.write_asset:
        command = " ".join(["python -m core.demo", *(argv if argv is not None else sys.argv[1:])])
        print(f"wrote {write_shipped_info(demo, command, time.perf_counter() - started)}")
    print(
        f"demo in {demo.folder}: model {demo.model.name} ({demo.info['model_source']}; test CA "
        f"{100 * demo.info['clean_accuracy']:.1f} %, ASR {100 * demo.info['attack_success_rate']:.1f} %), "
        f"data {demo.data}"
    )
    return 0
