"""What keeping large buffers in the process (core/allocator.py) saves on the product's defense loop.

    python benchmarks/allocator.py [--models smallcnn,resnet] [--batch-size 256] [--steps 4] [--repeats 3]

Times exactly what ``core.defend`` runs: ``Defense.run`` (GN-FT and plain FT) on a model built
as the commands build it, on ``--batch-size`` generated one-second clips (one step per epoch,
features computed once, the classifier in the layout the loop chooses, here channels_last on
the CPU), for ``--steps`` epochs, no evaluation. The two allocator settings alternate in the
same process (``keep``, the product's, and glibc's ``system`` defaults, switched with
``configure_allocator``), ``--repeats`` times each, so a shared, noisy machine slows both alike.
Reported: median seconds per step for each setting and the ratio system/keep. Threads: the
process's torch thread count (recorded). Writes benchmarks/results/allocator.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import this_command  # noqa: E402
from core.allocator import configure_allocator, mmapped_bytes  # noqa: E402
from core.data.audioset import AudioSet  # noqa: E402
from core.defenses import DEFENSES  # noqa: E402
from core.events import NullObserver  # noqa: E402
from core.models import build  # noqa: E402
from core.runtime import machine_info, write_json  # noqa: E402


def clips(n: int, classes: int = 10, seed: int = 0) -> AudioSet:
    """``n`` one-second clips of noise at 16 kHz, all in the training split."""
    gen = torch.Generator().manual_seed(seed)
    return AudioSet(
        waves=0.1 * torch.randn(n, 16000, generator=gen),
        labels=torch.arange(n) % classes,
        speakers=["s"] * n,
        classes=[f"w{i}" for i in range(classes)],
        sample_rate=16000,
        splits={"train": torch.arange(n), "validation": torch.arange(0), "test": torch.arange(0)},
    )


class StepClock(NullObserver):
    """The time at which each optimizer step ended (the loop's own step events)."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step(self, info) -> None:
        self.ends.append(time.perf_counter())


def seconds_per_step(
    defense: str, model_name: str, data: AudioSet, steps: int, batch_size: int, memory_format: str = "auto"
) -> float:
    """Median wall time between consecutive steps of ``Defense.run`` (the first step, which also warms
    up, and the features computed once before it are left out)."""
    torch.manual_seed(0)
    model = build(model_name, len(data.classes))
    config = DEFENSES[defense].Config(
        clean_ratio=1.0,
        epochs=steps + 1,
        batch_size=batch_size,
        eval_every=10**6,
        grad_norm_every=0,
        device="cpu",
        memory_format=memory_format,
    )
    clock = StepClock()
    DEFENSES[defense](config).run(model, data, clock)
    return statistics.median(b - a for a, b in zip(clock.ends, clock.ends[1:]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="smallcnn,resnet")
    p.add_argument("--defenses", default="ft,gnft")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "allocator.json"))
    args = p.parse_args()
    data = clips(args.batch_size)
    rows = []
    for model_name in args.models.split(","):
        for defense in args.defenses.split(","):
            times: dict[str, list[float]] = {"keep": [], "system": []}
            for _ in range(args.repeats):
                for mode in ("system", "keep"):
                    assert configure_allocator(mode) == mode
                    started = time.perf_counter()
                    times[mode].append(seconds_per_step(defense, model_name, data, args.steps, args.batch_size))
                    print(
                        f"{model_name} {defense} {mode}: {times[mode][-1]:.3f} s/step "
                        f"({time.perf_counter() - started:.1f} s)",
                        flush=True,
                    )
            keep, system = statistics.median(times["keep"]), statistics.median(times["system"])
            rows.append(
                {
                    "model": model_name,
                    "defense": defense,
                    "batch_size": args.batch_size,
                    "seconds_per_step_keep": round(keep, 4),
                    "seconds_per_step_system": round(system, 4),
                    "speedup_keep_over_system": round(system / keep, 3),
                    "runs": times,
                }
            )
    configure_allocator("keep")
    write_json(
        args.out,
        {
            "command": this_command(),
            "machine": machine_info(),
            "what": "seconds per Defense.run step, glibc defaults (system) against large buffers "
            "kept in the process (keep, the product's setting), alternating in one process",
            "mmapped_bytes_at_end": mmapped_bytes(),
            "rows": rows,
        },
    )
    for r in rows:
        print(
            f"{r['model']} {r['defense']}: keep {r['seconds_per_step_keep']:.3f} s, system "
            f"{r['seconds_per_step_system']:.3f} s per step: {r['speedup_keep_over_system']:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
