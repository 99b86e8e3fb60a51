"""Soak of the application during a long live GN-FT run (issue: PySide6 6.12.0 aborted the app with
"Fatal Python error: none_dealloc" about 35 s into a run): does a session of thousands of steps with
every live view on finish, stall the GUI thread, grow in memory or lose references to None/True?

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_soak.py [--steps 3000] [--seed 0] [--threads 1]

Builds the tiny backdoored workspace the GUI tests use (real WAV files, a smallcnn trained with a
BadNets trigger), then, in a child process (an abort is recorded as a crash with its signal and the
last lines of stderr instead of ending the benchmark), starts the real ``MainWindow`` at 1280x800,
opens the model and the dataset through the window, shows the Neurons tab and the Defense dock,
types the run into the Defense form (all the training split, batch 8, enough epochs for ``--steps``
optimizer steps, an evaluation every ~5 % of the run) and clicks Run. While the GUI thread's own
event loop runs, a 10 ms QTimer measures the largest gap between its firings, and resident memory
(VmRSS) and ``sys.getrefcount`` of None and True are sampled. Writes benchmarks/results/gui_soak.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QObject  # noqa: E402

from benchmarks.common import this_command  # noqa: E402

TICK_MS = 10
SAMPLE_MS = 500
BATCH_SIZE = 8
EVALUATIONS = 20  # about this many evaluations (CA/ASR and first-order CLC/BLC) per run
RESULT, SAMPLE = "GUI_SOAK_RESULT ", "GUI_SOAK_SAMPLE "  # the child's stdout lines the parent reads
WHAT = "a live GN-FT run in the application with every view on: crash, GUI-thread stalls, RSS, None/True refcounts"


# ---------------------------------------------------------------------------------------------- probes
def rss_mb() -> float:
    """Resident memory of this process (VmRSS of /proc/self/status) in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def refcounts(collect: bool = True) -> dict[str, int]:
    """``sys.getrefcount`` of None and True (after a full collection unless ``collect`` is False).

    PySide6 6.12.0 on Python 3.11 dropped one reference to None per void call and one to True per
    ``Signal.emit``: these fall steadily until None's count reaches 0 and the interpreter aborts."""
    if collect:
        gc.collect()
    return {"None": sys.getrefcount(None), "True": sys.getrefcount(True)}


def schedstat() -> tuple[int, int] | None:
    """This thread's nanoseconds on a CPU and runnable but waiting for one (/proc/thread-self/schedstat):
    on a shared machine the second is how long other processes kept the thread off the CPUs."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            on_cpu, waiting, _slices = f.read().split()
        return int(on_cpu), int(waiting)
    except (OSError, ValueError):
        return None


def percentile(ordered: list[float], q: float) -> float:
    """As benchmarks/gui_latency.py: the element at ``q`` of the sorted list (no interpolation)."""
    return ordered[int(q * (len(ordered) - 1))] if ordered else float("nan")


class GapProbe:
    """A QTimer firing every ``interval_ms`` on the GUI thread; records the gap between firings.

    A gap beyond the interval is a stall: for that long the GUI thread could not run its event loop."""

    def __init__(self, interval_ms: int = TICK_MS, where: Callable[[], int] | None = None) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.interval_ms = interval_ms
        self.where = where or (lambda: 0)
        self.gaps: list[float] = []
        #: the 5 largest: (gap ms, perf_counter_ns at its end, step, (ms on a CPU, ms runnable but waiting for one))
        self.worst: list[tuple[float, int, int, tuple[float, float] | None]] = []
        self._sched: tuple[int, int] | None = None
        self._sched0: tuple[int, int] | None = None
        self._last: int | None = None
        self._t0 = 0
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._t0 = time.perf_counter_ns()
        self._last = None
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter_ns()
        sched = schedstat()
        if self._last is not None:
            gap = (now - self._last) / 1e6
            self.gaps.append(gap)
            if len(self.worst) < 5 or gap > self.worst[-1][0]:
                split = (
                    ((sched[0] - self._sched[0]) / 1e6, (sched[1] - self._sched[1]) / 1e6)
                    if sched and self._sched
                    else None
                )
                self.worst.append((gap, now, self.where(), split))
                self.worst = sorted(self.worst, key=lambda w: w[0], reverse=True)[:5]
        else:
            self._sched0 = sched
        self._last, self._sched = now, sched

    def summary(self, collections: GCProbe | None = None) -> dict[str, Any]:
        ordered = sorted(self.gaps)
        if not ordered:
            return {"ticks": 0}
        stall = lambda gap: round(max(0.0, gap - self.interval_ms), 2)  # noqa: E731
        return {
            "tick_ms": self.interval_ms,
            "ticks": len(ordered) + 1,
            "max_gap_ms": round(ordered[-1], 2),
            "p99_gap_ms": round(percentile(ordered, 0.99), 2),
            "median_gap_ms": round(statistics.median(ordered), 2),
            "max_stall_ms": stall(ordered[-1]),
            "p99_stall_ms": stall(percentile(ordered, 0.99)),
            "stalls_over_50ms": sum(g - self.interval_ms > 50 for g in ordered),
            "stalls_over_100ms": sum(g - self.interval_ms > 100 for g in ordered),
            **(
                {"runqueue_wait_seconds": round((self._sched[1] - self._sched0[1]) / 1e9, 2)}
                if self._sched and self._sched0
                else {}
            ),
            "worst": [
                {
                    "gap_ms": round(g, 2),
                    "at_s": round((end - self._t0) / 1e9, 2),
                    "step": s,
                    **(
                        {}
                        if split is None
                        else {"on_cpu_ms": round(split[0], 2), "runqueue_wait_ms": round(split[1], 2)}
                    ),
                    **(
                        {}
                        if collections is None
                        else {"in_gc_ms": round(collections.overlap_ms(end - int(g * 1e6), end), 2)}
                    ),
                }
                for g, end, s, split in self.worst
            ],
        }


class GCProbe:
    """How long Python's cyclic garbage collector ran, per generation (``gc.callbacks``).

    A collection holds the GIL: whichever thread triggers it, the GUI thread waits for it."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, int, int]] = []  # (generation, start ns, end ns)
        self._start = 0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter_ns()
        else:
            self.runs.append((info["generation"], self._start, time.perf_counter_ns()))

    def start(self) -> None:
        self.runs = []
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def overlap_ms(self, begin: int, end: int) -> float:
        return sum(max(0, min(e, end) - max(s, begin)) for _g, s, e in self.runs) / 1e6

    def summary(self) -> dict[str, Any]:
        out = {}
        for gen in (0, 1, 2):
            ms = [(e - s) / 1e6 for g, s, e in self.runs if g == gen]
            out[f"gen{gen}"] = {"count": len(ms), "total_ms": round(sum(ms), 1), "max_ms": round(max(ms, default=0), 2)}
        return out


def wait_until(predicate: Callable[[], bool], timeout_s: float, poll_ms: int = 50) -> bool:
    """Run the GUI thread's event loop until ``predicate()`` holds (True) or ``timeout_s`` passes (False)."""
    from PySide6.QtCore import QEventLoop, QTimer

    if predicate():
        return True
    deadline = time.monotonic() + timeout_s
    loop, poll = QEventLoop(), QTimer()
    poll.setInterval(poll_ms)
    poll.timeout.connect(lambda: (predicate() or time.monotonic() > deadline) and loop.quit())
    poll.start()
    loop.exec()
    poll.stop()
    return predicate()


# ---------------------------------------------------------------------------------------------- workspace
def build_workspace(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """The GUI tests' workspace (tests/gui/conftest.py): a Speech Commands folder of tone clips (real
    WAV files, 4 words x 16 speakers x 2) and a smallcnn trained on it with a BadNets noise trigger."""
    from core.attacks import get_attack
    from core.checkpoint import save_checkpoint
    from core.data.speech_commands import load_speech_commands
    from core.features import FrontEndConfig
    from core.training import TrainConfig, train_model
    from tests.conftest import TINY_WORDS, write_speech_commands

    data_dir = write_speech_commands(root / "sc", speakers=16, per_speaker=2, seed=seed)
    data = load_speech_commands(data_dir, TINY_WORDS)
    attack = get_attack("badnets", kind="noise", poison_rate=0.2, level_db=-10, seed=seed, target=2)
    result = train_model(
        data,
        TrainConfig(model="smallcnn", epochs=8, batch_size=32, lr=3e-3, patience=8, device="cpu", seed=seed),
        attack,
        front_end=FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320),
        show_progress=False,
    )
    return save_checkpoint(root / "backdoored.safetensors", result.model, result.metadata), data_dir


# ---------------------------------------------------------------------------------------------- the soak
class Soak(QObject):
    """One live GN-FT run in an opened ``MainWindow``, typed into its Defense form and started with
    its Run button, measured from the GUI thread. :meth:`start`, run the event loop until
    :attr:`done`, then :meth:`result`. The window must have a model and a dataset open."""

    def __init__(
        self,
        window,
        steps: int,
        batch_size: int = BATCH_SIZE,
        evaluations: int = EVALUATIONS,
        sample_ms: int = SAMPLE_MS,
        on_sample: Callable[[dict], None] | None = None,
    ) -> None:
        from PySide6.QtCore import QTimer

        super().__init__()
        self._t0 = time.perf_counter()
        self.window, self.panel = window, window.defense_panel
        self.target_steps, self.batch_size, self.evaluations = steps, batch_size, evaluations
        self.on_sample = on_sample
        self.step = 0  # within the current phase (the observer's count starts again at each phase)
        self.total_steps = 0
        self.phase = ""
        self.phases: list[dict[str, Any]] = []  # one per phase in run order: name, steps reached, total
        self.eval_at: list[tuple[float, int]] = []
        self.samples: list[dict[str, Any]] = []
        self.failure: str | None = None
        self.config: Any = None
        self.probe = GapProbe(TICK_MS, where=lambda: self.step)
        self.collections = GCProbe()
        self.sampler = QTimer()
        self.sampler.setInterval(sample_ms)
        self.sampler.timeout.connect(self.sample)

    # slots of a QObject of the GUI thread: the worker's signals reach them queued, as they reach the views
    def _stepped(self, info) -> None:
        # the Recommended runs the scan's searches (one phase each) before GN-FT's own steps
        if info.phase != self.phase or info.step < self.step:
            self.phases.append({"phase": info.phase, "steps": 0, "total_steps": info.total_steps})
        self.phase, self.step, self.total_steps = info.phase, info.step, info.total_steps
        self.phases[-1].update(steps=info.step, total_steps=info.total_steps)

    def _evaluated(self, info) -> None:
        self.eval_at.append((round(time.perf_counter() - self._t0, 2), self.step))

    def _failed(self, message: str, _details: str) -> None:
        self.failure = message

    def plan(self) -> dict[str, Any]:
        """The form's values: the whole training split, ``batch_size``, epochs for ``target_steps``."""
        from core.defenses.base import clean_subset

        per_epoch = math.ceil(clean_subset(self.window.data, 1.0, 0).numel() / self.batch_size)
        epochs = max(1, math.ceil(self.target_steps / per_epoch))
        return {
            "clean_ratio": 1.0,
            "batch_size": self.batch_size,
            "epochs": epochs,
            "eval_every": max(1, epochs // self.evaluations),
        }

    def sample(self) -> dict[str, Any]:
        row = {
            "t_s": round(time.perf_counter() - self._t0, 2),
            "phase": len(self.phases) - 1,
            "step": self.step,
            "rss_mb": round(rss_mb(), 2),
            **{f"refcount_{k}": v for k, v in refcounts(collect=False).items()},
        }
        self.samples.append(row)
        if self.on_sample is not None:
            self.on_sample(row)
        return row

    def start(self):
        """Type the run into the Defense form, take the 'before' readings, click Run; the task or None."""
        from PySide6.QtWidgets import QDockWidget

        window, panel = self.window, self.panel
        window.show_tab(window.neurons)
        dock = window.findChild(QDockWidget, "dock_defense")
        if dock is not None:
            dock.show()
            dock.raise_()
        panel.select_defense("gnft")
        if panel.device.findText("cpu") >= 0:
            panel.device.setCurrentText("cpu")
        for name, value in self.plan().items():
            text = f"{100 * value:g}" if name in getattr(panel.form, "percent", ()) else str(value)
            panel.fields[name].setText(text)
        requested: list = []
        panel.run_requested.connect(lambda _name, config: requested.append(config))
        gc.collect()
        self.refcounts_before = refcounts()
        self.rss_start = rss_mb()
        self._t0 = time.perf_counter()
        self._cpu0 = (time.thread_time(), time.process_time())
        self.load_start = round(os.getloadavg()[0], 2)
        self.collections.start()
        self.probe.start()
        self.sampler.start()
        self.sample()
        panel.run_button.click()
        task = window.defense_task
        if task is None or not requested:
            self.failure = panel.error.text() or "the defense did not start"
            self.stop()
            return None
        self.config = requested[-1]
        task.observer.stepped.connect(self._stepped)
        task.observer.evaluated.connect(self._evaluated)
        task.failed.connect(self._failed)
        return task

    @property
    def done(self) -> bool:
        return self.failure is not None or self.panel.state == "finished"

    def stop(self) -> None:
        self.probe.stop()
        self.sampler.stop()
        self.collections.stop()

    def result(self) -> dict[str, Any]:
        """Every figure of the run; call once :attr:`done` holds (the probes stop here)."""
        import dataclasses

        seconds = time.perf_counter() - self._t0
        gui_cpu, process_cpu = time.thread_time() - self._cpu0[0], time.process_time() - self._cpu0[1]
        self.stop()
        self.sample()
        after = refcounts()
        rss_end = rss_mb()
        window, panel = self.window, self.panel
        steps = self.step
        outcome = window.session.pending
        growth = rss_end - self.rss_start
        rss = [s["rss_mb"] for s in self.samples]
        return {
            "completed": self.failure is None and panel.state == "finished",
            "failure": self.failure,
            "config": dataclasses.asdict(self.config) if self.config is not None else None,
            "steps": steps,
            "total_steps": self.total_steps,
            "phases": self.phases,
            "evaluations": len(self.eval_at),
            "run_seconds": round(seconds, 2),
            "steps_per_second": round(steps / seconds, 1) if seconds else None,
            "gui_thread": {
                **self.probe.summary(self.collections),
                "cpu_seconds": round(gui_cpu, 2),
                "busy_share": round(gui_cpu / seconds, 3) if seconds else None,
            },
            "process_cpu_seconds": round(process_cpu, 2),
            "load_average_1m": {"start": self.load_start, "end": round(os.getloadavg()[0], 2)},
            "garbage_collections": self.collections.summary(),
            "evaluations_at": [{"at_s": t, "step": s} for t, s in self.eval_at],
            "rss_mb": {
                "start": round(self.rss_start, 1),
                "end": round(rss_end, 1),
                "peak": round(max(rss), 1),
                "growth": round(growth, 1),
                "growth_per_1000_steps": round(1000 * growth / steps, 2) if steps else None,
                "after_first_quarter_per_1000_steps": growth_after(self.samples, rss_end, steps),
                "steady_per_1000_steps": steady_slope(self.samples, self.phases),
            },
            "refcounts": {
                "before": self.refcounts_before,
                "after": after,
                "delta": {k: after[k] - self.refcounts_before[k] for k in after},
                "min_sampled": {k: min(s[f"refcount_{k}"] for s in self.samples) for k in after},
            },
            "redraws": {"defense_panel": panel.redraws, "neuron_view": window.neurons.redraws},
            "loss_points_drawn": len(
                panel.loss_curve.getData()[0] if panel.loss_curve.getData()[0] is not None else []
            ),
            "before": _metrics(outcome.before) if outcome else None,
            "after": _metrics(outcome.after) if outcome else None,
            "samples": self.samples,
        }


def steady_slope(
    samples: list[dict[str, Any]], phases: list[dict[str, Any]] | None = None, skip: float = 0.25
) -> float | None:
    """MB per 1000 steps: the least-squares slope of RSS against the step within each phase, pooled over
    the phases (each its own intercept), on the samples after the first ``skip`` of each phase's steps and
    before its last step. A leak grows with every step of every phase; the one-offs (the first steps'
    optimizer state, caches and views' buffers, what a phase sets up before its first step or after its
    last) move no within-phase slope."""
    groups: dict[int, list[tuple[float, float]]] = {}
    for s in samples:
        k = s.get("phase", 0)
        if k < 0:
            continue
        last = phases[k]["steps"] if phases else max(t["step"] for t in samples if t.get("phase", 0) == k)
        if skip * last <= s["step"] < last and s["step"] > 0:
            groups.setdefault(k, []).append((s["step"], s["rss_mb"]))
    sxy = sxx = 0.0
    for points in groups.values():
        mx = sum(x for x, _ in points) / len(points)
        my = sum(y for _, y in points) / len(points)
        sxy += sum((x - mx) * (y - my) for x, y in points)
        sxx += sum((x - mx) ** 2 for x, _ in points)
    if sum(len(p) for p in groups.values()) < 3 or not sxx:
        return None
    return round(1000 * sxy / sxx, 2)


def growth_after(samples: list[dict[str, Any]], rss_end: float, steps: int, skip: float = 0.25) -> float | None:
    """MB per 1000 steps from the first sample at ``skip`` of the last phase's steps to the end of the run."""
    phase = max((s.get("phase", 0) for s in samples), default=0)
    first = next((s for s in samples if s.get("phase", 0) == phase and s["step"] >= skip * steps), None)
    if first is None or steps <= first["step"]:
        return None
    return round(1000 * (rss_end - first["rss_mb"]) / (steps - first["step"]), 2)


def _metrics(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m.get(k) for k in ("clean_accuracy", "attack_success_rate")}


def soak_in_window(
    model: Path,
    data: Path,
    steps: int,
    batch_size: int = BATCH_SIZE,
    threads: int = 1,
    timeout_s: float = 3600,
    evaluations: int = EVALUATIONS,
    on_sample: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """The whole soak in this process: application, window, workspace, run, figures."""
    import pyqtgraph
    import torch
    from PySide6 import __version__ as pyside_version
    from PySide6.QtWidgets import QApplication
    from shiboken6 import __version__ as shiboken_version

    from gnft_gui.main_window import MainWindow

    torch.set_num_threads(threads)
    app = QApplication.instance() or QApplication([])
    loaded = {"done": False}
    window = MainWindow()
    window.resize(1280, 800)
    window.show()
    window.predictions_ready.connect(lambda: loaded.update(done=True))
    if not window.open_model(model):
        raise RuntimeError(f"could not open {model}")
    window.open_data(data)
    if not wait_until(lambda: loaded["done"] and window.data is not None, 300):
        raise RuntimeError(f"{data}: no predictions after 300 s")
    if hasattr(window, "warm_up"):  # as gnft-gui does right after start (gnft_gui/app.py)
        warmed = {"done": False}
        window.warm_up().finished.connect(lambda _r: warmed.update(done=True))
        wait_until(lambda: warmed["done"], 120)
    soak = Soak(window, steps, batch_size, evaluations, on_sample=on_sample)
    soak.start()
    finished = wait_until(lambda: soak.done, timeout_s)
    row = soak.result()
    if not finished:
        row["failure"] = f"not finished after {timeout_s:.0f} s"
    row.update(
        what=WHAT,
        window={
            "width": window.width(),
            "height": window.height(),
            "tab": window.tabs.tabText(window.tabs.currentIndex()),
            "defense_dock_visible": window.defense_panel.isVisible(),
        },
        platform_plugin=app.platformName(),
        worker_threads=threads,
        versions={
            "PySide6": pyside_version,
            "shiboken6": shiboken_version,
            "pyqtgraph": pyqtgraph.__version__,
            "python": platform.python_version(),
        },
    )
    window.close()
    return row


# ---------------------------------------------------------------------------------------------- processes
def child(argv: list[str]) -> int:
    """The child: one soak, its samples and result as marked JSON lines on stdout."""
    import faulthandler

    faulthandler.enable()
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--evaluations", type=int, default=EVALUATIONS)
    args = p.parse_args(argv)
    emit = lambda mark, row: print(mark + json.dumps(row), flush=True)  # noqa: E731
    row = soak_in_window(
        Path(args.model),
        Path(args.data),
        args.steps,
        args.batch_size,
        args.threads,
        args.timeout,
        args.evaluations,
        on_sample=lambda s: emit(SAMPLE, s),
    )
    emit(RESULT, row)
    return 0 if row["completed"] else 1


def run_soak(
    model: Path,
    data: Path,
    steps: int,
    batch_size: int = BATCH_SIZE,
    threads: int = 1,
    timeout_s: float = 3600,
    evaluations: int = EVALUATIONS,
    work: Path | None = None,
) -> dict[str, Any]:
    """The soak in a child process. An abort (the none_dealloc of PySide6 6.12.0) or any other death
    gives ``completed: False`` with the exit code, the signal, the last stderr lines and the last sample."""
    with tempfile.TemporaryDirectory(prefix="gui-soak-") as tmp:
        folder = Path(work or tmp)
        env = dict(
            os.environ,
            OMP_NUM_THREADS=str(threads),
            MKL_NUM_THREADS=str(threads),
            GNFT_LOG_DIR=str(folder / "logs"),
            GNFT_SETTINGS_FILE=str(folder / "settings.ini"),
            GNFT_DATA_DIR=str(folder / "data"),
            GNFT_CACHE_DIR=os.environ.get("GNFT_CACHE_DIR", str(folder / "cache")),
            PYTHONFAULTHANDLER="1",
        )
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
        env.pop("GNFT_AUDIO_DEVICE", None)
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            "--model",
            str(model),
            "--data",
            str(data),
            "--steps",
            str(steps),
            "--batch-size",
            str(batch_size),
            "--threads",
            str(threads),
            "--timeout",
            str(timeout_s),
            "--evaluations",
            str(evaluations),
        ]
        out_path, err_path = folder / "stdout.txt", folder / "stderr.txt"
        started = time.perf_counter()
        with open(out_path, "w") as out, open(err_path, "w") as err:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err)
            try:
                code = proc.wait(timeout=timeout_s + 600)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        wall = time.perf_counter() - started
        lines = out_path.read_text(errors="replace").splitlines()
        stderr = err_path.read_text(errors="replace").splitlines()
    samples = [json.loads(line[len(SAMPLE) :]) for line in lines if line.startswith(SAMPLE)]
    results = [json.loads(line[len(RESULT) :]) for line in lines if line.startswith(RESULT)]
    row: dict[str, Any] = (
        results[-1]
        if results
        else {"what": WHAT, "completed": False, "samples": samples, "steps": samples[-1]["step"] if samples else 0}
    )
    row["process"] = {
        "exit_code": code,
        "signal": signal.Signals(-code).name if code < 0 else None,
        "crashed": code < 0 or not results,
        "wall_seconds": round(wall, 1),
        "fatal": [line for line in stderr if line.startswith("Fatal Python error")],
        "stderr_tail": stderr[-25:]
        if (code != 0 or not results)
        else [line for line in stderr if "Fatal" in line or "Error" in line][-10:],
    }
    if not results:
        row["completed"] = False
        row["last_sample"] = samples[-1] if samples else None
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps of the GN-FT run (at least)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated clips and of the backdoored model")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the application (the machine has 2 cores)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds the run may take before it counts as hung")
    p.add_argument("--samples", action="store_true", help="keep every RSS/refcount sample in the JSON")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gui_soak.json"))
    args = p.parse_args()
    import torch

    from core.runtime import check_writable, machine_info, write_json

    check_writable(args.out)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="gui-soak-workspace-") as tmp:
        started = time.perf_counter()
        model, data = build_workspace(Path(tmp), args.seed)
        built = time.perf_counter() - started
        row = run_soak(model, data, args.steps, args.batch_size, args.threads, args.timeout)
    row["workspace"] = {
        "seed": args.seed,
        "build_seconds": round(built, 1),
        "what": "tests/gui/conftest.py's: 4 words x 16 speakers x 2 tone clips, smallcnn + BadNets",
    }
    samples = row.pop("samples", [])
    if args.samples:
        row["samples"] = samples
    else:  # about 20 evenly spaced samples: the shape of RSS and the refcounts over the run
        keep = sorted({round(i * (len(samples) - 1) / 19) for i in range(20)})
        row["samples"] = [samples[i] for i in keep] if len(samples) > 20 else samples
    summary = {k: row.get(k) for k in ("completed", "steps", "run_seconds")}
    summary.update(
        max_stall_ms=row.get("gui_thread", {}).get("max_stall_ms"),
        rss_growth_mb=row.get("rss_mb", {}).get("growth"),
        refcount_delta=row.get("refcounts", {}).get("delta"),
        exit_code=row["process"]["exit_code"],
    )
    print(json.dumps(summary))
    write_json(args.out, {"command": this_command(), "machine": machine_info(), "rows": [row]})
    return 0 if row["completed"] else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2:]))
    sys.exit(main())
