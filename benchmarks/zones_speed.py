"""Exact CLC for every neuron of a layer: batched passes against the one-neuron-at-a-time loop.

    python benchmarks/zones_speed.py [--model resnet] [--layers ...] [--clips 300] [--device auto]
                                     [--checkpoint M.safetensors]

Both methods give the same numbers (checked here: max absolute difference reported); the
loop is the authors' procedure (zero one filter, run the whole set, restore). Both work on
features computed once, so the ratio is the batching and the cached prefix alone. Target:
batched at least 10x faster for a layer. Each row also times the batched method with the other
device's default pass size (``pass_elements``), side by side. Writes benchmarks/results/zones_speed_<device>.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import this_command  # noqa: E402
from core.analysis.zones import exact_loss_changes, looped_loss_changes, pass_elements  # noqa: E402
from core.checkpoint import load_checkpoint  # noqa: E402
from core.features import FrontEndConfig  # noqa: E402
from core.models import build  # noqa: E402
from core.runtime import machine_info, resolve_device, seed_everything, write_json  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet")
    p.add_argument("--checkpoint", help="time a trained checkpoint instead of a freshly initialised model")
    p.add_argument("--layers", default="classifier.layer3.1.conv2,classifier.layer2.1.conv2,classifier.conv1")
    p.add_argument("--clips", type=int, default=300)
    p.add_argument("--device", default="auto")
    p.add_argument("--out")
    args = p.parse_args()
    device = resolve_device(args.device)
    seed_everything(0)
    if args.checkpoint:
        model, _ = load_checkpoint(args.checkpoint)
    else:
        model = build(args.model, 10, FrontEndConfig())
    model = model.to(device).eval()
    waves = (
        torch.randn(args.clips, model[0].config.num_samples if hasattr(model[0], "config") else 16000, device=device)
        * 0.1
    )
    labels = torch.randint(0, 10, (args.clips,), device=device)
    rows = []
    for layer in args.layers.split(","):

        def timed(fn):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            value = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            return value, time.perf_counter() - start

        batched, t_batched = timed(lambda: exact_loss_changes(model, layer, waves, labels))
        looped, t_looped = timed(lambda: looped_loss_changes(model, layer, waves, labels))
        # the other device's pass size, side by side: why the default differs between CPU and GPU
        other = pass_elements(torch.device("cpu" if device.type == "cuda" else "cuda"))
        _, t_other = timed(lambda: exact_loss_changes(model, layer, waves, labels, max_elements=other))
        row = {
            "layer": layer,
            "neurons": looped.numel(),
            "clips": args.clips,
            "looped_seconds": round(t_looped, 3),
            "batched_seconds": round(t_batched, 3),
            "pass_elements": pass_elements(device),
            "other_pass_elements": other,
            "batched_other_pass_seconds": round(t_other, 3),
            "speedup": round(t_looped / t_batched, 2),
            "max_abs_difference": float((batched - looped).abs().max()),
            "target_speedup": 10.0,
            "meets_target": t_looped / t_batched >= 10.0,
        }
        print(row, flush=True)
        rows.append(row)
    out = args.out or str(ROOT / "benchmarks" / "results" / f"zones_speed_{device.type}.json")
    write_json(
        out,
        {
            "command": this_command(),
            "machine": machine_info(device),
            "model": args.checkpoint or args.model,
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
