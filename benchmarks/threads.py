"""How many torch threads suit this machine: the figures behind ``core.runtime.default_threads``.

    python benchmarks/threads.py [--models smallcnn,resnet] [--defense gnft] [--batch-size 128] [--steps 3]

Times exactly what ``core.defend`` runs (``Defense.run``, features computed once, the layout the
loop chooses, the product's allocator: see ``benchmarks/allocator.py``) in fresh worker processes,
one per measurement, under four conditions side by side in one run:

- ``1 thread`` and ``2 threads``, the machine as it is;
- the same with one competing busy process (a Python loop) started first, as on a shared machine;
- ``two 1-thread workers``: two processes each running the same steps at once, as
  ``core.grid --jobs 2 --threads 1`` does; its throughput is steps per second of both together.

Reported per model: seconds per step for each condition, steps per second, and the ratios the
thread policy rests on. Writes benchmarks/results/threads.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import this_command  # noqa: E402
from core.runtime import machine_info, write_json  # noqa: E402


def worker(args: argparse.Namespace) -> int:
    """One measurement in this process: median seconds per step with ``--threads`` threads (JSON on stdout)."""
    from benchmarks.allocator import clips, seconds_per_step
    from core.runtime import set_threads

    set_threads(args.threads)
    data = clips(args.batch_size)
    seconds = seconds_per_step(args.defense, args.model, data, args.steps, args.batch_size)
    print(json.dumps({"seconds_per_step": seconds}))
    return 0


def _start(args: argparse.Namespace, model: str, threads: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--model",
        model,
        "--threads",
        str(threads),
        "--defense",
        args.defense,
        "--batch-size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)


def _result(proc: subprocess.Popen) -> float:
    out, _ = proc.communicate(timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed with exit code {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])["seconds_per_step"]


def measure(args: argparse.Namespace, model: str) -> dict:
    """Every condition once for ``model``; the order alternates so drift in the machine's load hits all."""
    row: dict = {"model": model, "defense": args.defense, "batch_size": args.batch_size}
    for busy in (False, True):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            tag = "busy" if busy else "as_is"
            load = round(os.getloadavg()[0], 2)
            for threads in (1, 2):
                row[f"seconds_per_step_{threads}_thread_{tag}"] = round(_result(_start(args, model, threads)), 4)
            pair = [_start(args, model, 1), _start(args, model, 1)]
            both = [_result(p) for p in pair]
            row[f"seconds_per_step_two_1_thread_workers_{tag}"] = [round(s, 4) for s in both]
            row[f"load_average_1m_at_start_{tag}"] = load
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
        one = row[f"seconds_per_step_1_thread_{tag}"]
        two = row[f"seconds_per_step_2_thread_{tag}"]
        row[f"steps_per_second_1_thread_{tag}"] = round(1 / one, 4)
        row[f"steps_per_second_2_threads_{tag}"] = round(1 / two, 4)
        row[f"steps_per_second_two_1_thread_workers_{tag}"] = round(sum(1 / s for s in both), 4)
        row[f"speedup_2_threads_over_1_{tag}"] = round(one / two, 3)
        row[f"throughput_two_workers_over_one_2_thread_{tag}"] = round(sum(1 / s for s in both) * two, 3)
        print(json.dumps(row), flush=True)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="smallcnn,resnet")
    p.add_argument("--defense", default="gnft")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "threads.json"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    rows = [measure(args, m) for m in args.models.split(",")]
    write_json(
        args.out,
        {
            "command": this_command(),
            "machine": machine_info(),
            "what": "seconds per Defense.run step with 1 and 2 torch threads, alone and beside one busy "
            "process, and two 1-thread workers at once (core.grid --jobs 2 --threads 1)",
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
