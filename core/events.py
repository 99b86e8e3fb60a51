"""Progress events from long-running engine work (training, defenses, analysis).

Plain Python callbacks: the command line prints them, the application turns them into
queued Qt signals. ``should_stop`` is polled once per step; a run that sees it stops at
the next step boundary.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "StepInfo",
    "EvalInfo",
    "NeuronStats",
    "Observer",
    "NullObserver",
    "ProgressObserver",
    "CancelToken",
    "Cancelled",
    "SCAN_PHASE",
    "SEARCH_AGAIN_PHASE",
]

#: The phase prefix of a scan's steps ("scan features", "scan waveform"): a repair that scans for the
#: trigger to unlearn sends them before its own, and a view of the fine-tuning leaves them out.
SCAN_PHASE = "scan "

#: The phase prefix of a trigger searched again in the middle of a repair (``unlearn_refresh``; "scan again
#: waveform"): a scan's phase too, so views of the fine-tuning leave it out as well.
SEARCH_AGAIN_PHASE = f"{SCAN_PHASE}again "


@dataclass
class StepInfo:
    """One optimisation step: where it is, its loss and (optionally) per-neuron gradient norms."""

    phase: str
    epoch: int
    step: int
    total_steps: int
    loss: float
    lr: float | None = None
    grad_norms: dict[str, list[float]] | None = None


@dataclass
class EvalInfo:
    """One evaluation: clean accuracy and, when an attack is known, ASR and robust accuracy."""

    phase: str
    epoch: int
    clean_accuracy: float
    loss: float | None = None
    attack_success_rate: float | None = None
    robust_accuracy: float | None = None


@dataclass
class NeuronStats:
    """Per-neuron figures of one layer (``grad_norm``, ``clc``, ``blc``), with what produced them.

    ``label`` says when and how, e.g. ``"before (exact)"`` or ``"evaluation 2 (first-order)"``.
    """

    layer: str
    values: dict[str, list[float]]
    label: str = ""


@runtime_checkable
class Observer(Protocol):
    """Receives engine events. An observer may set ``wants_grad_norms = True`` to get
    per-neuron gradient norms in :class:`StepInfo` (they cost a device sync per step)."""

    def on_step(self, info: StepInfo) -> None: ...

    def on_eval(self, info: EvalInfo) -> None: ...

    def on_neurons(self, stats: NeuronStats) -> None: ...

    def should_stop(self) -> bool: ...


class NullObserver:
    """An observer that ignores every event and never asks to stop."""

    wants_grad_norms: bool = False

    def on_step(self, info: StepInfo) -> None:
        pass

    def on_eval(self, info: EvalInfo) -> None:
        pass

    def on_neurons(self, stats: NeuronStats) -> None:
        pass

    def should_stop(self) -> bool:
        return False


class ProgressObserver(NullObserver):
    """For the command line: advances ``bar`` (anything with ``update(n)``) per epoch, logs every evaluation.
    A repair's later pass (``rescan_passes``) counts its epochs on: a tqdm bar's total grows by one pass."""

    def __init__(self, logger: logging.Logger, bar: Any = None, label: str = "") -> None:
        self.log, self.bar, self.label, self.epoch = logger, bar, label, 0
        self.per_pass = getattr(bar, "total", None)

    def on_step(self, info: StepInfo) -> None:
        if info.phase.startswith(SCAN_PHASE):  # a repair's scan for the trigger to unlearn: not an epoch
            return
        if info.epoch > self.epoch:
            if self.bar is not None:
                if self.per_pass and info.epoch > self.bar.total:
                    self.bar.total += self.per_pass
                self.bar.update(info.epoch - self.epoch)
            self.epoch = info.epoch

    def on_eval(self, info: EvalInfo) -> None:
        when = "before the run" if info.phase == "before" else f"epoch {info.epoch}"
        self.log.info(
            "%s%s: clean accuracy %.4f%s",
            f"{self.label}: " if self.label else "",
            when,
            info.clean_accuracy,
            "" if info.attack_success_rate is None else f", ASR {info.attack_success_rate:.4f}",
        )


class CancelToken:
    """A thread-safe flag: ``cancel()`` from any thread, ``cancelled`` read by the worker."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


class Cancelled(Exception):
    """Raised inside engine loops when the observer asks to stop; callers return the input untouched."""
