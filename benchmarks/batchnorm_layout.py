"""What exact BatchNorm costs in the CPU's channels_last layout (issue 30).

    python benchmarks/batchnorm_layout.py [--models smallcnn,resnet] [--defenses ft,gnft] [--batch-size 256]
                                          [--steps 3] [--repeats 3] [--threads 1]

Times exactly what ``core.defend`` runs (``Defense.run``: features computed once, the product's
allocator, ``--threads`` torch threads) in three layouts, alternating in one process so a noisy
machine slows them alike: ``contiguous``; ``channels_last`` as the product runs it (the exact
BatchNorm of ``core.models.batchnorm``, pairwise sums in channels_last); and
``channels_last_plain`` (PyTorch's channels_last BatchNorm, about 1e-3 relative error in training:
the layout before the fix, kept here only to price it). Reported: median seconds per step and the
ratios to ``contiguous``. Writes benchmarks/results/batchnorm_layout.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import core.loop  # noqa: E402
from benchmarks.allocator import clips, seconds_per_step  # noqa: E402
from benchmarks.common import this_command  # noqa: E402
from core.runtime import machine_info, set_threads, write_json  # noqa: E402

LAYOUTS = ("contiguous", "channels_last", "channels_last_plain")


def seconds_in_layout(defense: str, model_name: str, data, steps: int, batch_size: int, layout: str) -> float:
    """``benchmarks.allocator.seconds_per_step`` in ``layout`` (``channels_last_plain``: PyTorch's BatchNorm)."""
    exact = core.loop.use_exact_batchnorm
    if layout == "channels_last_plain":
        core.loop.use_exact_batchnorm = lambda module: _Nothing()
    try:
        memory_format = "contiguous" if layout == "contiguous" else "channels_last"
        return seconds_per_step(defense, model_name, data, steps, batch_size, memory_format)
    finally:
        core.loop.use_exact_batchnorm = exact


class _Nothing:
    def remove(self) -> None:
        pass


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="smallcnn,resnet")
    p.add_argument("--defenses", default="ft,gnft")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", default="1")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "batchnorm_layout.json"))
    args = p.parse_args()
    set_threads(args.threads)
    data = clips(args.batch_size)
    rows = []
    for model_name in args.models.split(","):
        for defense in args.defenses.split(","):
            times: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
            for _ in range(args.repeats):
                for layout in LAYOUTS:
                    times[layout].append(
                        seconds_in_layout(defense, model_name, data, args.steps, args.batch_size, layout)
                    )
                    print(f"{model_name} {defense} {layout}: {times[layout][-1]:.3f} s/step", flush=True)
            median = {layout: statistics.median(t) for layout, t in times.items()}
            rows.append(
                {
                    "model": model_name,
                    "defense": defense,
                    "batch_size": args.batch_size,
                    **{f"seconds_per_step_{k}": round(v, 4) for k, v in median.items()},
                    **{f"speedup_{k}_over_contiguous": round(median["contiguous"] / v, 3) for k, v in median.items()},
                    "runs": times,
                }
            )
    write_json(
        args.out,
        {
            "command": this_command(),
            "machine": machine_info(),
            "what": "seconds per Defense.run step: contiguous, channels_last with exact BatchNorm (the "
            "product's CPU path) and channels_last with PyTorch's own BatchNorm, alternating in one process",
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
