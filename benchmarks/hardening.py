"""Issue 32's longer profile: many generated command lines per command; none may break, hang or lose a file.

Draws ``--examples`` command lines per command from ``tests/hardening/harness.py`` (each option's good and
bad values on a tiny workspace), runs each in this process as ``python -m`` would, and counts how many ran,
how many were refused (exit 2, one line naming an option), and how many broke the promise: a traceback,
another exit code, a run over ``--hang-seconds`` (interrupted by an alarm), an input file changed, a
temporary left, or an error line that names no option. Writes ``benchmarks/results/hardening.json``.

    python benchmarks/hardening.py --examples 150
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from benchmarks.common import this_command  # noqa: E402
from core.runtime import machine_info, write_json  # noqa: E402
from tests.hardening.harness import COMMANDS, Workspace, check, command_lines, run  # noqa: E402

KINDS = {
    "traceback": "tracebacks",
    "exit": "other_exit_codes",
    "an input changed": "lost_files",
    "temporaries": "temporaries_left",
    "hang": "hangs",
}


class Hang(Exception):
    """A run that went past ``--hang-seconds``."""


def _alarm(signum, frame):
    raise Hang


def profile(ws: Workspace, command: str, examples: int, hang_seconds: int) -> dict:
    """Run ``examples`` drawn command lines of ``command``; tally what happened."""
    tally = {"tried": 0, "ran": 0, "refused": 0, **{v: 0 for v in KINDS.values()}, "unclear_errors": 0}
    failures: list[str] = []
    slowest = 0.0

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=command_lines(ws, command))
    def one(case):
        nonlocal slowest
        argv, out = case
        tally["tried"] += 1
        before = ws.inputs()
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(hang_seconds)
        try:
            outcome = run(command, argv)
        except Hang:
            tally["hangs"] += 1
            failures.append(f"hang: {command} {' '.join(argv)}")
            return
        finally:
            signal.alarm(0)
        slowest = max(slowest, outcome.seconds)
        try:
            tally[check(command, argv, outcome, ws, before, out)] += 1
        except AssertionError as exc:
            text = str(exc)
            kind = next((v for k, v in KINDS.items() if text.startswith(k)), "unclear_errors")
            tally[kind] += 1
            failures.append(text.splitlines()[0][:300])

    one()
    return {**tally, "slowest_seconds": round(slowest, 2), "failures": failures[:10]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", type=int, default=150, help="command lines per command (default 150)")
    p.add_argument("--hang-seconds", type=int, default=120, help="a run longer than this is a hang (default 120)")
    p.add_argument("--commands", default=",".join(COMMANDS), help="comma list (default all)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "hardening.json"))
    args = p.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gnft-hardening-") as tmp:
        os.environ["GNFT_CACHE_DIR"] = str(Path(tmp) / "cache")
        ws = Workspace(Path(tmp) / "ws")
        commands = {c: profile(ws, c, args.examples, args.hang_seconds) for c in args.commands.split(",")}
    broken = sum(r[k] for r in commands.values() for k in (*KINDS.values(), "unclear_errors"))
    result = {
        "command": this_command(),
        "machine": machine_info(),
        "examples_per_command": args.examples,
        "hang_seconds": args.hang_seconds,
        "tried": sum(r["tried"] for r in commands.values()),
        "broken": broken,
        "commands": commands,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(args.out, result)
    for name, r in commands.items():
        print(
            f"{name:>8}: {r['tried']} tried, {r['ran']} ran, {r['refused']} refused; tracebacks {r['tracebacks']}, "
            f"hangs {r['hangs']}, lost files {r['lost_files']}, unclear errors {r['unclear_errors']}"
        )
    print(f"wrote {args.out}: {result['tried']} cases, {broken} broken, {result['seconds']} s")
    return 0 if broken == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
