"""Run engine work in a QThread and turn core events into queued Qt signals.

The GUI thread only draws: a :class:`Task` wraps a callable ``fn(observer) -> result``; it runs
in its own QThread, the engine talks to a :class:`QtObserver` (plain Python callbacks that emit
signals, delivered to the GUI thread by queued connections), and cancellation is a
:class:`~core.events.CancelToken` the engine polls once per step.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from core.events import Cancelled, CancelToken, EvalInfo, NeuronStats, StepInfo

__all__ = ["QtObserver", "Task"]

log = logging.getLogger("gnft_gui.worker")


class QtObserver(QObject):
    """A core Observer whose events are Qt signals; ``should_stop`` reads the task's token."""

    stepped = Signal(object)
    evaluated = Signal(object)
    neurons = Signal(object)

    def __init__(self, token: CancelToken, wants_grad_norms: bool = False) -> None:
        super().__init__()
        self.token = token
        self.wants_grad_norms = wants_grad_norms

    def on_step(self, info: StepInfo) -> None:
        self.stepped.emit(info)

    def on_eval(self, info: EvalInfo) -> None:
        self.evaluated.emit(info)

    def on_neurons(self, stats: NeuronStats) -> None:
        self.neurons.emit(stats)

    def should_stop(self) -> bool:
        return self.token.cancelled


class _Runner(QObject):
    finished = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()

    def __init__(self, fn: Callable[[QtObserver], Any], observer: QtObserver) -> None:
        super().__init__()
        self.fn, self.observer = fn, observer

    @Slot()
    def run(self) -> None:
        try:
            result = self.fn(self.observer)
        except Cancelled:
            log.info("task cancelled")
            self.cancelled.emit()
            return
        except Exception as err:  # reported to the GUI thread, which shows it
            log.error("task failed: %s", err, exc_info=True)
            self.failed.emit(str(err), traceback.format_exc())
            return
        self.finished.emit(result)


class Task(QObject):
    """One piece of background work. Connect to ``finished``/``failed`` (and the observer's signals),
    then :meth:`start`. ``cancel`` asks the engine to stop at its next step; the task then emits
    ``cancelled`` (not ``failed``)."""

    finished = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()

    def __init__(
        self,
        fn: Callable[[QtObserver], Any],
        name: str = "task",
        wants_grad_norms: bool = False,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.name = name
        self.token = CancelToken()
        self.observer = QtObserver(self.token, wants_grad_norms)
        self._thread = QThread()
        self._thread.setObjectName(name)
        self._runner = _Runner(fn, self.observer)
        self._runner.moveToThread(self._thread)
        self.observer.moveToThread(self._thread)
        self._thread.started.connect(self._runner.run)
        self._runner.finished.connect(self._done)
        self._runner.failed.connect(self._fail)
        self._runner.cancelled.connect(self._cancelled)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self.token.cancel()

    @property
    def running(self) -> bool:
        return self._thread.isRunning()

    def wait(self, ms: int = 30000) -> bool:
        return self._thread.wait(ms)

    def stop(self, ms: int = 60000) -> bool:
        """Cancel, let the thread end as soon as the work returns, and wait for it (on shutdown).

        The thread's event loop is told to quit here: its results are delivered to the GUI
        thread, which is blocked in this wait, so nobody else would end the loop."""
        self.cancel()
        self._thread.quit()
        return self._thread.wait(ms)

    @Slot(object)
    def _done(self, result: Any) -> None:
        self._thread.quit()
        self._thread.wait()
        self.finished.emit(result)

    @Slot(str, str)
    def _fail(self, message: str, details: str) -> None:
        self._thread.quit()
        self._thread.wait()
        self.failed.emit(message, details)

    @Slot()
    def _cancelled(self) -> None:
        self._thread.quit()
        self._thread.wait()
        self.cancelled.emit()
