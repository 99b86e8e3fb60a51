"""``core.train`` and ``core.defend`` end to end, the commands before issue 30 against today's (issue 30).

    python benchmarks/end_to_end.py [--data ../shared/data/fsdd] [--models smallcnn,resnet]
                                    [--before d2377dc] [--train-epochs 1] [--defend-epochs 10]
                                    [--threads 1] [--repeats 1] [--work DIR]

The same command lines run in a git worktree of ``--before`` (the last commit before issue 30:
channels_last with PyTorch's imprecise BatchNorm, glibc's default allocator, features computed in
every step) and in this checkout, one after the other for each model so a noisy machine slows both
alike, with the same Python and the same environment (``OMP_NUM_THREADS`` = ``--threads``; both
commands then use that many torch threads). Timed: the whole process, start-up, data loading and
the final evaluation included. ``core.train``: a backdoored model (BadNets), ``--train-epochs``
epochs; ``core.defend``: the default repair (the Recommended preset) with ``--defend-epochs`` epochs
on the checkpoint the earlier ``core.train`` wrote (the same input for both). Reported: seconds,
ratios before/after, and each run's accuracy and attack success so the two are seen to do the same
job. Writes benchmarks/results/end_to_end.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import this_command  # noqa: E402
from core.runtime import machine_info, write_json  # noqa: E402

BEFORE = "d2377dc"  # the parent of issue 30's first commit (e8ac37e, the allocator)


def worktree(rev: str, where: Path) -> Path:
    """A checkout of ``rev`` at ``where`` (made once; reused when it is already there)."""
    if not (where / "core").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where), rev], check=True)
    return where


def timed(cmd: list[str], cwd: Path, threads: int) -> float:
    """Wall seconds of ``cmd`` run in ``cwd``; stops the benchmark with the command's error if it fails."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONPATH=str(cwd))
    env.pop("GNFT_THREADS", None)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stderr[-2000:]}")
    return seconds


def figures(report: Path, part: str | None = None) -> dict:
    """Clean accuracy and attack success of a train report (or of its ``part``: before/after)."""
    d = json.loads(report.read_text())
    d = d[part] if part else d
    return {k: d.get(k) for k in ("clean_accuracy", "attack_success_rate")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fsdd"))
    p.add_argument("--models", default="smallcnn,resnet")
    p.add_argument("--before", default=BEFORE)
    p.add_argument("--train-epochs", type=int, default=1)
    p.add_argument("--defend-epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--work", default=None, help="folder for the worktree and checkpoints (default: a temporary one)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "end_to_end.json"))
    args = p.parse_args()
    if not Path(args.data).is_dir():
        raise SystemExit(f"--data: no dataset folder at {args.data}")
    work = Path(args.work or tempfile.mkdtemp(prefix="gnft-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    trees = {"before": worktree(args.before, work / "before"), "after": ROOT}
    rows = []
    for model in args.models.split(","):
        times: dict[str, dict[str, list[float]]] = {"train": {}, "defend": {}}
        results: dict[str, dict] = {}
        for repeat in range(args.repeats):
            order = ("before", "after") if repeat % 2 == 0 else ("after", "before")
            for which in order:
                ckpt, report = work / f"{model}-{which}.safetensors", work / f"{model}-{which}-train.json"
                train = [sys.executable, "-m", "core.train", "--data", args.data, "--model", model]
                train += ["--attack", "badnets", "--epochs", str(args.train_epochs), "--seed", "0", "--quiet"]
                train += ["--out", str(ckpt), "--report", str(report)]
                times["train"].setdefault(which, []).append(timed(train, trees[which], args.threads))
                results.setdefault(which, {})["train"] = figures(report)
            source = work / f"{model}-before.safetensors"  # one input for both repairs
            for which in order:
                out, report = work / f"{model}-{which}-repaired.safetensors", work / f"{model}-{which}-defend.json"
                defend = [sys.executable, "-m", "core.defend", "--model", str(source), "--data", args.data]
                defend += ["--epochs", str(args.defend_epochs), "--seed", "0", "--quiet"]
                defend += ["--out", str(out), "--report", str(report)]
                times["defend"].setdefault(which, []).append(timed(defend, trees[which], args.threads))
                results[which]["defend"] = figures(report, "after")
        for command, by in times.items():
            before, after = statistics.median(by["before"]), statistics.median(by["after"])
            rows.append(
                {
                    "model": model,
                    "command": f"core.{command}",
                    "seconds_before": round(before, 1),
                    "seconds_after": round(after, 1),
                    "speedup": round(before / after, 3),
                    "runs": by,
                    "figures": {which: results[which][command] for which in ("before", "after")},
                }
            )
            print(f"{model} core.{command}: {before:.1f} s -> {after:.1f} s ({before / after:.2f}x)", flush=True)
    write_json(
        args.out,
        {
            "command": this_command(),
            "machine": machine_info(),
            "what": "wall seconds of whole core.train / core.defend processes with the same arguments: "
            f"the commands at {args.before} (before issue 30) against this checkout's, alternating",
            "before": args.before,
            "data": Path(args.data).name,
            "train_epochs": args.train_epochs,
            "defend_epochs": args.defend_epochs,
            "threads": args.threads,
            "target": "each command at least 2x faster end to end",
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
