"""The speed paths of the defenses: eager float32, bf16 autocast (``amp=bf16``), ``torch.compile``
and the memory layout of the conv weights (``memory_format``).

    python benchmarks/gpu_path.py [--model resnet] [--defense gnft] [--clips 512] [--batch-size 256]
        [--epochs 6] [--device auto] [--variants eager,bf16,compile,compile+bf16]

A variant is ``+``-joined tokens: ``eager`` (the defaults), ``bf16``, ``compile``, ``contiguous``,
``channels_last`` (``eager`` alone uses ``memory_format=auto``: channels_last on CPU). One defense
run per variant on the same random-init model and the same synthetic clips (real front end, real
``Defense.run``). Reported per variant: wall time of the whole run and of the steps after the
first epoch (compilation and warm-up excluded), speed-up over the first variant listed (the
reference), and the largest weight difference to the reference run with dropout switched off
(compiled code and another memory layout draw dropout masks differently). bf16 changes the
numbers by design; its difference is reported, not judged. Writes
benchmarks/results/gpu_path_<device>.json.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import this_command  # noqa: E402
from core.data.audioset import AudioSet  # noqa: E402
from core.defenses import DEFENSES  # noqa: E402
from core.events import NullObserver  # noqa: E402
from core.features import FrontEndConfig  # noqa: E402
from core.models import build  # noqa: E402
from core.runtime import machine_info, resolve_device, seed_everything, write_json  # noqa: E402


class EpochClock(NullObserver):
    """Times every epoch's steps (a CUDA synchronise at each boundary)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.marks, self.epoch = device, [], 0

    def on_step(self, info) -> None:
        if info.epoch != self.epoch:
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.marks.append(time.perf_counter())
            self.epoch = info.epoch


def synthetic_clips(n: int, classes: int, sample_rate: int, device: torch.device) -> AudioSet:
    """Tones per class with noise: enough structure for losses to move; speed is what is measured."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % classes
    t = torch.arange(sample_rate) / sample_rate
    waves = torch.sin(2 * torch.pi * (300 + 120 * labels.view(-1, 1)) * t) * 0.3 + 0.05 * torch.randn(
        n, sample_rate, generator=g
    )
    return AudioSet(
        waves.float().to(device),
        labels.to(device),
        [f"s{i % 8}" for i in range(n)],
        [f"c{k}" for k in range(classes)],
        sample_rate,
        {"train": torch.arange(n)},
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet")
    p.add_argument("--defense", default="gnft", choices=sorted(DEFENSES))
    p.add_argument("--clips", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--variants", default="eager,bf16,compile,compile+bf16")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="default benchmarks/results/gpu_path_<device>.json")
    args = p.parse_args()
    device = resolve_device(args.device)
    seed_everything(0)
    model = build(args.model, 10, FrontEndConfig()).eval()
    for m in model.modules():  # compiled and eager dropout masks differ: compare without dropout
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    data = synthetic_clips(args.clips, 10, 16000, device)
    base = DEFENSES[args.defense].Config(
        clean_ratio=1.0,
        epochs=args.epochs,
        batch_size=args.batch_size,
        eval_every=args.epochs,
        device=str(device),
        grad_norm_every=0,
    )
    rows, reference_state = [], None
    for variant in args.variants.split(","):
        tokens = set(variant.split("+"))
        if not tokens <= {"eager", "bf16", "compile", "contiguous", "channels_last"}:
            p.error(f"variant {variant!r}: tokens are eager, bf16, compile, contiguous, channels_last")
        layout = "contiguous" if "contiguous" in tokens else "channels_last" if "channels_last" in tokens else "auto"
        config = dataclasses.replace(
            base, amp="bf16" if "bf16" in tokens else "none", compile="compile" in tokens, memory_format=layout
        )
        clock = EpochClock(device)
        torch._dynamo.reset()
        started = time.perf_counter()
        result = DEFENSES[args.defense](config).run(copy.deepcopy(model), data, clock)
        if device.type == "cuda":
            torch.cuda.synchronize()
        total = time.perf_counter() - started
        steady = (time.perf_counter() - clock.marks[1]) / (args.epochs - 1) if len(clock.marks) > 1 else None
        state = {k: v.float() for k, v in result.model.state_dict().items()}
        reference_state = state if reference_state is None else reference_state
        diff = max(float((state[k] - reference_state[k]).abs().max()) for k in state if state[k].is_floating_point())
        rows.append(
            {
                "variant": variant,
                "amp": config.amp,
                "compile": config.compile,
                "memory_format": layout,
                "seconds": round(total, 2),
                "steady_seconds_per_epoch": None if steady is None else round(steady, 4),
                "max_abs_weight_difference_to_reference": diff,
            }
        )
        print(rows[-1])
    reference = rows[0]
    for r in rows:
        if r["steady_seconds_per_epoch"] and reference["steady_seconds_per_epoch"]:
            r["speedup_over_reference"] = round(
                reference["steady_seconds_per_epoch"] / r["steady_seconds_per_epoch"], 3
            )
    out = args.out or str(ROOT / "benchmarks" / "results" / f"gpu_path_{device.type}.json")
    write_json(
        out,
        {
            "command": this_command(),
            "machine": machine_info(device),
            "setup": {
                "model": args.model,
                "defense": args.defense,
                "clips": args.clips,
                "batch_size": args.batch_size,
                "epochs": args.epochs,
                "reference": rows[0]["variant"],
            },
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
