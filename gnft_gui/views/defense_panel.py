"""Run a defense from the application and watch it: form, Run/Cancel, live plots, before/after, Accept/Revert.

The form is generated from the chosen defense's config dataclass (GN-FT's defaults: alpha 0.7,
r 0.05, 5 % clean data). The run happens in a :class:`~gnft_gui.worker.Task`; step events are
throttled to at most one redraw per ``REDRAW_MS`` so the GUI thread only draws. Plot items are
created once and updated with ``setData``.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import QElapsedTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.defenses import DEFENSES, OPTION_HELP
from core.events import EvalInfo, StepInfo

from .forms import DataclassForm, error_label

__all__ = ["DefensePanel", "REDRAW_MS"]


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f} %"


REDRAW_MS = 66  # at most ~15 redraws a second
HIDDEN = {"seed", "device", "grad_norm_every"}
METRICS = (("clean_accuracy", "CA"), ("attack_success_rate", "ASR"), ("robust_accuracy", "RA"))


class DefensePanel(QWidget):
    """Emits ``run_requested(name, config)``, ``cancel_requested()``, ``accept_requested()``, ``revert_requested()``."""

    run_requested = Signal(str, object)
    cancel_requested = Signal()
    accept_requested = Signal()
    revert_requested = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.choice = QComboBox()
        self.choice.setObjectName("defense_choice")
        self.choice.addItems(list(DEFENSES))
        self.device = QComboBox()
        self.device.setObjectName("defense_device")
        self.device.addItem("auto")
        self.device.addItem("cpu")
        if torch.cuda.is_available():
            self.device.addItem(f"cuda ({torch.cuda.get_device_name(0)})", "cuda")
        self.form = DataclassForm("defense_", hidden=HIDDEN, tips=OPTION_HELP)
        self.error = error_label("defense_error")
        self.run_button = QPushButton("Run")
        self.run_button.setObjectName("run_defense")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancel_defense")
        self.accept_button = QPushButton("Accept")
        self.accept_button.setObjectName("accept_defense")
        self.revert_button = QPushButton("Revert")
        self.revert_button.setObjectName("revert_defense")
        self.progress = QProgressBar()
        self.progress.setObjectName("defense_progress")
        self.eta = QLabel("")
        self.eta.setObjectName("defense_eta")
        self.findings = QLabel("")  # what to know before accepting: core.metrics.defense_findings
        self.findings.setObjectName("defense_findings")
        self.findings.setWordWrap(True)
        self.findings.setStyleSheet("color: #b26a00;")
        self.findings.setVisible(False)
        self.curve_plot = pg.PlotWidget(title="test-split CA / ASR per evaluation")
        self.curve_plot.addLegend()
        self.curves = {key: self.curve_plot.plot([], [], name=label, symbol="o",
                                                 pen=pg.mkPen({"clean_accuracy": "#2e7d32",
                                                               "attack_success_rate": "#c62828",
                                                               "robust_accuracy": "#1565c0"}[key]))
                       for key, label in METRICS}
        self.reference = {key: pg.InfiniteLine(angle=0, pen=pg.mkPen("#999999", style=pg.QtCore.Qt.PenStyle.DashLine))
                          for key, _ in METRICS if key != "robust_accuracy"}
        for line in self.reference.values():
            self.curve_plot.addItem(line)
        self.loss_plot = pg.PlotWidget(title="training loss per step")
        self.loss_curve = self.loss_plot.plot([], [], pen=pg.mkPen("#6a1b9a"))
        self.result = QTableWidget(len(METRICS) + 2, 3)
        self.result.setObjectName("defense_result")
        self.result.setHorizontalHeaderLabels(["", "before", "after"])
        self.result.verticalHeader().setVisible(False)
        self.runs_table = QTableWidget(0, 5)
        self.runs_table.setObjectName("defense_runs")
        self.runs_table.setHorizontalHeaderLabels(["run", "CA after", "ASR after", "DER", "time (s)"])
        self.runs_table.verticalHeader().setVisible(False)
        self.runs: list[dict] = []  # finished runs, kept for comparison
        self.ghosts: list[pg.PlotDataItem] = []
        buttons = QHBoxLayout()
        for b in (self.run_button, self.cancel_button, self.accept_button, self.revert_button):
            buttons.addWidget(b)
        top = QFormLayout()
        top.addRow("defense", self.choice)
        top.addRow("device", self.device)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.form)
        layout.addWidget(self.error)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.eta)
        layout.addWidget(self.findings)
        for w in (self.curve_plot, self.loss_plot, self.result, self.runs_table):
            w.setMinimumHeight(150 if isinstance(w, pg.PlotWidget) else 90)  # readable even in a crowded dock
            layout.addWidget(w, 1)
        self.choice.currentTextChanged.connect(self._rebuild_form)
        self.run_button.clicked.connect(self._run_clicked)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.accept_button.clicked.connect(self.accept_requested)
        self.revert_button.clicked.connect(self.revert_requested)
        self._rebuild_form(self.choice.currentText())
        self.set_state("idle")
        self.redraws = 0
        self._clock = QElapsedTimer()
        self._last_draw = -REDRAW_MS
        self._losses: list[float] = []
        self._evals: list[EvalInfo] = []

    # ------------------------------------------------------------------ form
    def _rebuild_form(self, name: str) -> None:
        self.form.build(DEFENSES[name].Config)

    @property
    def fields(self) -> dict:
        return self.form.fields

    def config(self):
        """The form's values as the defense's config (raises ValueError naming a bad field)."""
        cls = DEFENSES[self.choice.currentText()]
        device = self.device.currentData() or self.device.currentText()
        config = cls.Config(**self.form.typed(), device=device, grad_norm_every=1)
        config.validate()
        return config

    def _run_clicked(self) -> None:
        try:
            config = self.config()
        except Exception as err:
            self.error.setText(str(err))
            return
        self.error.setText("")
        self.run_requested.emit(self.choice.currentText(), config)

    # ------------------------------------------------------------------ live updates
    def set_state(self, state: str) -> None:
        """idle | running | finished (a result waits for Accept/Revert)."""
        self.state = state
        self.run_button.setEnabled(state == "idle")
        self.cancel_button.setEnabled(state == "running")
        self.accept_button.setEnabled(state == "finished")
        self.revert_button.setEnabled(state == "finished")

    def start(self, before: dict[str, float]) -> None:
        self._losses, self._evals, self.redraws = [], [], 0
        self._overlay_runs()
        self.loss_plot.enableAutoRange(x=True)
        for key, line in self.reference.items():
            if before.get(key) is not None:
                line.setValue(before[key])
        for curve in self.curves.values():
            curve.setData([], [])
        self.loss_curve.setData([], [])
        self._fill_result(before, None)
        self.show_findings([])
        self._clock.start()
        self._last_draw = -REDRAW_MS
        self.progress.setValue(0)
        self.set_state("running")

    def on_step(self, info: StepInfo) -> None:
        if not self._losses:  # fixed step axis for the run: no axis re-layout at every step
            self.loss_plot.setXRange(0, info.total_steps + 1, padding=0)
        self._losses.append(info.loss)
        self.progress.setRange(0, info.total_steps)
        self.progress.setValue(info.step)
        now = self._clock.elapsed()
        if now - self._last_draw >= REDRAW_MS or info.step == info.total_steps:
            self._last_draw = now
            self._redraw(info)

    def _redraw(self, info: StepInfo) -> None:
        self.redraws += 1
        self.loss_curve.setData(np.arange(1, len(self._losses) + 1), np.asarray(self._losses))
        elapsed = self._clock.elapsed() / 1000
        left = elapsed / max(1, info.step) * (info.total_steps - info.step)
        lr = "" if info.lr is None else f", lr {info.lr:.3g}"
        self.eta.setText(f"step {info.step}/{info.total_steps}{lr}, {elapsed:.0f} s elapsed, about {left:.0f} s left")

    def on_eval(self, info: EvalInfo) -> None:
        self._evals.append(info)
        epochs = np.array([e.epoch for e in self._evals])
        for key, curve in self.curves.items():
            values = [getattr(e, key) for e in self._evals]
            if all(v is not None for v in values):
                curve.setData(epochs, np.asarray(values, dtype=float))

    def finish(self, before: dict[str, float], after: dict[str, float], seconds: float, name: str = "",
               findings: list[str] | tuple[str, ...] = ()) -> None:
        self._fill_result(before, after, seconds)
        self.show_findings(findings)
        self._keep_run(name or self.choice.currentText(), before, after, seconds)
        self.eta.setText(f"finished in {seconds:.1f} s: Accept makes it the current model, Revert discards it")
        self.set_state("finished")

    def show_findings(self, findings: list[str] | tuple[str, ...]) -> None:
        """One warning line per finding under the progress line; hidden when there are none."""
        self.findings.setText("\n".join(f"\u26a0 {f}" for f in findings))
        self.findings.setVisible(bool(findings))

    def _keep_run(self, name: str, before: dict[str, float], after: dict[str, float], seconds: float) -> None:
        """Remember a finished run: a row in the runs table now, dashed curves under the next run."""
        from core.metrics import defense_effectiveness_rating

        der = defense_effectiveness_rating(before, after) if before.get("attack_success_rate") is not None else None
        label = f"{name} #{len(self.runs) + 1}"
        curves = {key: curve.getData() for key, curve in self.curves.items()}
        self.runs.append({"label": label, "after": after, "der": der, "seconds": seconds, "curves": curves})
        row = self.runs_table.rowCount()
        self.runs_table.insertRow(row)
        cells = (label, _pct(after.get("clean_accuracy")), _pct(after.get("attack_success_rate")),
                 "" if der is None else f"{der:.3f}", f"{seconds:.1f}")
        for c, text in enumerate(cells):
            self.runs_table.setItem(row, c, QTableWidgetItem(text))

    def _overlay_runs(self) -> None:
        """Draw every finished run not yet drawn as faint dashed CA/ASR curves."""
        for run in self.runs[len(self.ghosts) // 2:]:
            for key in ("clean_accuracy", "attack_success_rate"):
                x, y = run["curves"][key]
                colour = pg.mkColor({"clean_accuracy": "#2e7d32", "attack_success_rate": "#c62828"}[key])
                colour.setAlpha(110)
                ghost = pg.PlotDataItem([] if x is None else x, [] if y is None else y,
                                        pen=pg.mkPen(colour, style=pg.QtCore.Qt.PenStyle.DashLine),
                                        name=f"{run['label']} {'CA' if key == 'clean_accuracy' else 'ASR'}")
                self.curve_plot.addItem(ghost)
                self.ghosts.append(ghost)

    def _fill_result(self, before: dict[str, float], after: dict[str, float] | None, seconds: float | None = None):
        rows = [(label, before.get(key), None if after is None else after.get(key)) for key, label in METRICS]
        der = None
        if after is not None and before.get("attack_success_rate") is not None:
            from core.metrics import defense_effectiveness_rating

            der = defense_effectiveness_rating(before, after)
        rows += [("DER", None, der), ("time (s)", None, seconds)]
        for r, (label, b, a) in enumerate(rows):
            for c, value in enumerate((label, b, a)):
                text = value if isinstance(value, str) else ("" if value is None else
                                                             f"{100 * value:.1f} %" if label in ("CA", "ASR", "RA")
                                                             else f"{value:.3f}" if label == "DER" else f"{value:.1f}")
                self.result.setItem(r, c, QTableWidgetItem(text))

    def after_value(self, label: str) -> str:
        """The 'after' cell of a result row (CA, ASR, RA, DER, time (s))."""
        for r in range(self.result.rowCount()):
            if self.result.item(r, 0) and self.result.item(r, 0).text() == label:
                return self.result.item(r, 2).text()
        return ""
