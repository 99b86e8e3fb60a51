"""``python -m core.analyze``: neuron forensics from the command line.

For each chosen layer: per-neuron gradient norms of the clean loss (averaged over batches of
the clean share of the training split, as the paper's Figure 2), CLC on the clean test split,
BLC on the backdoor test set (triggered non-target clips labelled with the target, plus the
target-class clips), the zones, and the rank correlation of the first-order CLC/BLC estimate
with the exact values. With ``--compare`` (e.g. the model after GN-FT) the same for the second
checkpoint and the zone counts side by side (the paper's Figure 4 claim). Writes JSON and,
with ``--plot``, a PNG in the style of Figures 2 and 4.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.analysis.model import analyse_model, default_layers
from core.analysis.zones import ZONE_COLOURS, ZONES
from core.checkpoint import load_checkpoint
from core.cli.common import add_attack_override_arguments, add_data_arguments, attack_for, load_from_args
from core.errors import ConfigError
from core.models import analysable_layers
from core.options import number
from core.runtime import (
    add_common_arguments,
    machine_info,
    parse_args,
    resolve_device,
    write_json,
)
from core.validate import IMAGE_SUFFIXES, input_path, output_path

__all__ = ["build_parser", "main", "plot_analysis"]

log = logging.getLogger("core.analyze")


def plot_analysis(result: dict[str, Any], path: str | Path, *, dpi: int = 100) -> tuple[int, int]:
    """A PNG: per model one row with the per-neuron gradient norms coloured by zone (Figure 2) and
    CLC against BLC (Figure 4). Returns the image's (width, height) in pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    models = [("before", result["model"])] + ([("after", result["after"])] if "after" in result else [])
    fig = Figure(figsize=(12, 4.5 * len(models)), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(models), 2, squeeze=False)
    for row, (label, analysis) in enumerate(models):
        ax_norm, ax_zone = axes[row]
        offset = 0
        for layer, entry in analysis["layers"].items():
            g = entry.get("grad_norm") or []
            zones = entry.get("zones") or ["redundant"] * len(g)
            xs = list(range(offset, offset + len(g)))
            ax_norm.bar(xs, g, width=1.0, color=[ZONE_COLOURS[z] for z in zones], linewidth=0)
            ax_norm.axvline(offset - 0.5, color="#bbbbbb", linewidth=0.8)
            ax_norm.text(
                offset,
                1.0,
                layer.removeprefix("classifier."),
                transform=ax_norm.get_xaxis_transform(),
                fontsize=7,
                va="top",
                rotation=90,
            )
            offset += len(g)
            if "clc" in entry:
                for z in ZONES:
                    pts = [(c, b) for c, b, zz in zip(entry["clc"], entry["blc"], entry["zones"]) if zz == z]
                    if pts:
                        ax_zone.scatter(*zip(*pts), s=10, color=ZONE_COLOURS[z], alpha=0.7)
        ax_norm.set_title(f"{label}: per-neuron gradient norm on clean data, coloured by zone")
        ax_norm.set_xlabel("neuron (layers left to right)")
        ax_norm.set_ylabel(f"L{result.get('grad_ord', 2)} gradient norm")
        ax_zone.axhline(result.get("t_blc", 0.0), color="black", linewidth=0.8)
        ax_zone.axvline(result.get("t_clc", 0.0), color="black", linewidth=0.8)
        counts = analysis["summary"]["zone_counts"]
        for z in ZONES:
            ax_zone.scatter([], [], color=ZONE_COLOURS[z], label=f"{z} ({counts[z]})")
        ax_zone.legend(loc="best", fontsize=8)
        ax_zone.set_title(f"{label}: clean-loss change vs backdoor-loss change when a neuron is zeroed")
        ax_zone.set_xlabel("CLC")
        ax_zone.set_ylabel("BLC")
    fig.tight_layout()
    fig.savefig(str(path), dpi=dpi)
    width, height = fig.get_size_inches() * dpi
    return int(round(width)), int(round(height))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m core.analyze",
        description="Per-neuron gradient norms and CLC/BLC zones of a checkpoint (and of a second one to compare).",
        epilog="Example: python -m core.analyze --model backdoored.safetensors --compare repaired.safetensors "
        "--data runs/synth_scd10 --out analysis.json --plot analysis.png",
    )
    input_path(p, "--model", required=True, help="checkpoint to analyse (.safetensors)")
    input_path(p, "--compare", help="a second checkpoint of the same architecture (e.g. after GN-FT)")
    add_data_arguments(p)
    add_attack_override_arguments(p)
    p.add_argument("--layers", help="comma list of layer names, or 'all' (default: the 3 deepest before the output)")
    p.add_argument(
        "--split", choices=["train", "validation", "test"], default="test", help="split for CLC/BLC (default test)"
    )
    p.add_argument("--max-clips", type=number(int, "[1, inf)"), help="use at most this many clips of the split")
    p.add_argument(
        "--clean-ratio",
        type=number(float, "(0, 1]", range_text="a share in (0, 1]"),
        default=0.05,
        help="share of the training split for gradient norms (default 0.05, the defense's clean set)",
    )
    p.add_argument("--grad-ord", type=int, choices=[1, 2], default=2, help="L1 or L2 gradient norm (default 2)")
    p.add_argument(
        "--method",
        choices=["exact", "first-order", "looped"],
        default="exact",
        help="CLC/BLC: exact batched (default), first-order estimate, or the slow one-at-a-time loop",
    )
    p.add_argument("--t-clc", type=number(float), default=0.0, help="CLC zone threshold (default 0)")
    p.add_argument("--t-blc", type=number(float), default=0.0, help="BLC zone threshold (default 0)")
    output_path(p, "--out", required=True, help="JSON to write")
    output_path(
        p,
        "--plot",
        suffixes=IMAGE_SUFFIXES,
        suffix_text="an image format (" + ", ".join(IMAGE_SUFFIXES) + ")",
        help="image to write (PNG, or another format its ending names: .pdf, .svg, ...)",
    )
    add_common_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(build_parser(), argv)
    device = resolve_device(args.device)
    model, meta = load_checkpoint(args.model)
    other = None
    if args.compare:
        other, other_meta = load_checkpoint(args.compare)
        if (other_meta["architecture"], other_meta["classes"]) != (meta["architecture"], meta["classes"]):
            raise ConfigError(
                f"--compare {args.compare} is a {other_meta['architecture']} over "
                f"{len(other_meta['classes'])} classes; {args.model} is a {meta['architecture']} over "
                f"{len(meta['classes'])}"
            )
    available = [n for n, _ in analysable_layers(model)]
    if args.layers in (None, ""):
        layers = default_layers(model)
    elif args.layers == "all":
        layers = available
    else:
        layers = [n.strip() for n in args.layers.split(",") if n.strip()]
        unknown = [n for n in layers if n not in available]
        if unknown:
            raise ConfigError(f"--layers: no layer(s) {', '.join(unknown)}; analysable layers: {', '.join(available)}")
    attack, attack_source = attack_for(args, meta)
    data = load_from_args(
        args, meta["sample_rate"], meta["front_end"]["num_samples"], vocab=args.vocab or meta["classes"]
    ).to(device)
    if list(data.classes) != list(meta["classes"]):
        raise ConfigError(f"the data's classes {data.classes} differ from the model's {meta['classes']}")
    if args.split not in data.splits:
        raise ConfigError(f"no split {args.split!r}; the data has {', '.join(data.splits)}")
    started = time.perf_counter()
    options = dict(
        split=args.split,
        clean_ratio=args.clean_ratio,
        seed=args.seed,
        grad_ord=args.grad_ord,
        max_clips=args.max_clips,
        method=args.method,
        t_clc=args.t_clc,
        t_blc=args.t_blc,
    )
    result: dict[str, Any] = {
        "command": " ".join(["python -m core.analyze", *argv]),
        "checkpoint": args.model,
        "attack": attack.to_dict() if attack is not None else None,
        "attack_source": attack_source,
        "layers": layers,
        "grad_ord": args.grad_ord,
        "t_clc": args.t_clc,
        "t_blc": args.t_blc,
        "method": args.method,
        "split": args.split,
        "model": analyse_model(model.to(device), data, attack, layers, **options),
    }
    if other is not None:
        result["compare_checkpoint"] = args.compare
        result["after"] = analyse_model(other.to(device), data, attack, layers, **options)
        result["zone_counts_before_after"] = {
            z: [result["model"]["summary"]["zone_counts"][z], result["after"]["summary"]["zone_counts"][z]]
            for z in ZONES
        }
    if attack is None:
        result["note"] = (
            "no attack information (none recorded in the checkpoint and no --attack): "
            "gradient norms only; CLC/BLC and zones need a backdoor set"
        )
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["machine"] = machine_info(device)
    write_json(args.out, result)
    line = f"wrote {args.out}"
    if args.plot:
        w, h = plot_analysis(result, args.plot)
        line += f" and {args.plot} ({w}x{h})"
    counts = result["model"]["summary"]["zone_counts"]
    print(("zones " + ", ".join(f"{z} {counts[z]}" for z in ZONES) + "; " if attack is not None else "") + line)
    return 0
