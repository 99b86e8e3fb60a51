"""A live GN-FT session does not crash, lose references to None/True or grow without bound.

PySide6 6.12.0 on Python 3.11 dropped one reference to None on every void call and one to True on
every ``Signal.emit``: the application aborted ("Fatal Python error: none_dealloc") about 35 s into
a live run. Both tests run in a child process, so such an abort fails the test instead of ending
pytest. The short soak is benchmarks/gui_soak.py's own code (the benchmark runs >= 3000 steps).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.gui_soak import run_soak, steady_slope  # noqa: E402

STEPS = 200  # the workspace's 112 training clips at batch 8: 14 steps an epoch, 15 epochs (210 steps)
# A leak shows as growth that goes on step after step. The GUI's default repair (the Recommended) first runs
# the scan's four searches, 200 steps each, then GN-FT's own steps: five phases whose step counts each start
# at 0. One-offs come between them (the optimizer state, caches, the views' buffers, the pruning and latent
# push set up before GN-FT's first step: 100-150 MB, varying with thread timing and malloc arenas); inside a
# phase RSS stays within a few MB. So the bound is on the least-squares slope of RSS against the step within
# each phase, pooled over the phases after each one's first quarter: keeping one batch of features per step
# would add about 130 MB per 1000 steps; 3000 steps measured 0.3 (benchmarks/results/gui_soak.json).
ONE_OFF_MB = 250
MB_PER_STEP_AFTER_FIRST_QUARTER = 0.5


def test_a_live_gnft_run_finishes_without_losing_references(workspace, tmp_path):
    _root, data_dir, model_path = workspace
    row = run_soak(model_path, data_dir, STEPS, evaluations=3, timeout_s=600, work=tmp_path)
    process = row["process"]
    assert row["completed"], f"{row.get('failure')}; exit {process['exit_code']} ({process['signal']}):\n" + "\n".join(
        process["stderr_tail"]
    )
    assert not process["crashed"] and process["exit_code"] == 0
    assert row["steps"] == row["total_steps"] >= STEPS
    assert row["phases"][-1]["steps"] == row["steps"] and len(row["phases"]) > 1, row["phases"]  # scans, then GN-FT
    assert row["evaluations"] >= 3  # the CA/ASR curve and the first-order zones were fed during the run
    delta = row["refcounts"]["delta"]
    print("refcount deltas over the run:", delta, "RSS (MB):", row["rss_mb"])
    # with the leaking PySide6 each falls by one per void call / emit: thousands over this run
    assert delta["None"] >= 0 and delta["True"] >= 0, row["refcounts"]
    assert row["rss_mb"]["growth"] < ONE_OFF_MB, row["rss_mb"]
    assert row["rss_mb"]["steady_per_1000_steps"] / 1000 < MB_PER_STEP_AFTER_FIRST_QUARTER, row["rss_mb"]
    redraws = row["redraws"]
    assert redraws["defense_panel"] >= 2 and redraws["neuron_view"] >= 2, redraws
    assert row["loss_points_drawn"] == row["steps"]  # the loss curve holds every step
    assert row["window"]["tab"] == "Neurons" and row["window"]["defense_dock_visible"]


def test_the_steady_slope_sees_a_leak_in_every_phase_but_not_a_one_off_between_phases():
    phases = [{"steps": 200, "total_steps": 200}, {"steps": 200, "total_steps": 200}]

    def samples(per_step_mb: float, between_mb: float) -> list[dict]:
        rows = []
        for k in range(2):
            for step in range(0, 201, 10):
                rows.append({"phase": k, "step": step, "rss_mb": 1000 + k * between_mb + per_step_mb * step})
        return rows

    # the failing CI run's pattern: a 110 MB one-off before the last phase read as 552 MB per 1000 steps
    assert steady_slope(samples(0.0, 110.0), phases) == 0.0
    assert steady_slope(samples(0.13, 110.0), phases) == 130.0
    assert steady_slope(samples(0.13, 0.0), phases) == 130.0


LEAK_PROBE = textwrap.dedent("""
    import gc, json, os, sys
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QObject, Signal
    from PySide6.QtWidgets import QApplication, QLabel

    class Source(QObject):
        fired = Signal(int)

    app = QApplication([])
    label, source, got = QLabel(), Source(), []
    source.fired.connect(got.append)

    def calls(n):
        for i in range(n):
            label.setText("x")  # a void call: returns None
        for i in range(n):
            source.fired.emit(i)  # returns True

    calls(5)  # first calls may cache method wrappers
    gc.collect()
    before = (sys.getrefcount(None), sys.getrefcount(True))
    calls(200)
    gc.collect()
    after = (sys.getrefcount(None), sys.getrefcount(True))
    print(json.dumps({"None": after[0] - before[0], "True": after[1] - before[1], "emitted": len(got)}))
""")


def test_void_calls_and_emits_keep_the_references_to_none_and_true():
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    proc = subprocess.run([sys.executable, "-c", LEAK_PROBE], capture_output=True, text=True, timeout=120, env=env)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no result, exit {proc.returncode}:\n{proc.stderr[-3000:]}"
    deltas = json.loads(lines[-1])
    print("refcount deltas after 200 QLabel.setText and 200 Signal.emit:", deltas)
    # PySide6 6.12.0: {"None": -200, "True": -200}, then "Fatal Python error: bool_dealloc" at exit (SIGABRT)
    assert deltas["None"] == 0 and deltas["True"] == 0, f"{deltas}\n{proc.stderr[-3000:]}"
    assert deltas["emitted"] == 205
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{proc.stderr[-3000:]}"
