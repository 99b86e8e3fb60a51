"""Shared by the training benchmarks: run ``python -m core.train`` rows resumably, gather reports."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_row(row: dict, work: Path, threads: int) -> dict | None:
    """Train one row unless its report exists; a failure leaves ``<name>.error.txt``."""
    report = work / f"{row['name']}.json"
    if not report.is_file():
        cmd = [
            sys.executable,
            "-m",
            "core.train",
            *row["args"],
            "--out",
            str(work / f"{row['name']}.safetensors"),
            "--report",
            str(report),
        ]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            (work / f"{row['name']}.error.txt").write_text(proc.stderr or "failed")
    return gather(row, work)


def gather(row: dict, work: Path) -> dict | None:
    """The row with its report (or its error), or None when it has not run."""
    report, error = work / f"{row['name']}.json", work / f"{row['name']}.error.txt"
    if report.is_file():
        return {**row, "report": json.loads(report.read_text())}
    if error.is_file():
        return {**row, "error": " ".join(error.read_text().strip().splitlines()[-1:]) or "failed"}
    return None


def this_command() -> str:
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)
