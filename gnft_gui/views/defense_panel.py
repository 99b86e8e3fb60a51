"""Run a defense from the application and watch it: preset, form, Run/Cancel, live plots, before/after,
Accept/Revert.

A preset (:mod:`core.presets`: Recommended by default, or the paper's loop) fills the form; editing a
value makes it "Custom". The form is generated from the chosen defense's config dataclass, with
human labels, shares in percent and the less used options under "Advanced". The run happens in a
:class:`~gnft_gui.worker.Task`; step events are throttled to at most one redraw per ``REDRAW_MS``
so the GUI thread only draws. Plot items are created once and updated with ``setData``.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import QElapsedTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core.defenses import DEFENSE_TITLES, DEFENSES
from core.events import SCAN_PHASE, SEARCH_AGAIN_PHASE, EvalInfo, StepInfo
from core.metrics import percent
from core.presets import DEFAULT_PRESET, PRESETS, matching_preset

from .forms import DataclassForm, error_label
from .plots import SERIES, ZoneLegend, make_plot

__all__ = ["DefensePanel", "REDRAW_MS", "METRIC_COLOURS"]


REDRAW_MS = 66  # at most ~15 redraws a second
METRICS = (("clean_accuracy", "CA"), ("attack_success_rate", "ASR"), ("robust_accuracy", "RA"))
METRIC_COLOURS = {
    "clean_accuracy": SERIES["green"],
    "attack_success_rate": SERIES["vermillion"],
    "robust_accuracy": SERIES["blue"],
}
CUSTOM = "custom"


def fit_rows(table: QTableWidget) -> None:
    """Fix a table's height to show every row and its header: no row hidden behind a scroll bar."""
    height = table.horizontalHeader().height() + table.verticalHeader().length() + 2 * table.frameWidth()
    table.setFixedHeight(height + 2)


class DefensePanel(QWidget):
    """Emits ``run_requested(name, config)``, ``cancel_requested()``, ``accept_requested()``, ``revert_requested()``."""

    run_requested = Signal(str, object)
    cancel_requested = Signal()
    accept_requested = Signal()
    revert_requested = Signal()

    def __init__(self) -> None:
        super().__init__()
        #: the domains of the scan a run makes first for the trigger to unlearn, in order (for its progress)
        self.scan_domains: list[str] = []
        self.preset = QComboBox()
        self.preset.setObjectName("defense_preset")
        for preset in PRESETS.values():
            self.preset.addItem(preset.title, preset.name)
            self.preset.setItemData(self.preset.count() - 1, preset.summary, pg.QtCore.Qt.ItemDataRole.ToolTipRole)
        self.preset.addItem("Custom", CUSTOM)
        self.preset_summary = QLabel("")
        self.preset_summary.setObjectName("defense_preset_summary")
        self.preset_summary.setWordWrap(True)
        #: the last named preset chosen: a custom run is recorded as changed from it
        self.base_preset: str | None = DEFAULT_PRESET
        self.choice = QComboBox()
        self.choice.setObjectName("defense_choice")
        for name in DEFENSES:
            self.choice.addItem(DEFENSE_TITLES.get(name, name), name)
        self.device = QComboBox()
        self.device.setObjectName("defense_device")
        self.device.addItem("auto")
        self.device.addItem("cpu")
        if torch.cuda.is_available():
            self.device.addItem(f"cuda ({torch.cuda.get_device_name(0)})", "cuda")
        self.form = DataclassForm("defense_")  # labels, tooltips, percent, Advanced: the configs' field metadata
        self.error = error_label("defense_error")
        self.error.setVisible(False)
        self.run_button = QPushButton("Run")
        self.run_button.setObjectName("run_defense")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancel_defense")
        self.accept_button = QPushButton("Accept")
        self.accept_button.setObjectName("accept_defense")
        self.accept_button.setToolTip("make the repaired model the current one (File > Export saves it)")
        self.revert_button = QPushButton("Revert")
        self.revert_button.setObjectName("revert_defense")
        self.revert_button.setToolTip("discard the repaired model: the current one stays as it was")
        self.progress = QProgressBar()
        self.progress.setObjectName("defense_progress")
        self.eta = QLabel("")
        self.eta.setObjectName("defense_eta")
        self.eta.setWordWrap(True)
        self.findings = QLabel("")  # what to know before accepting: core.metrics.defense_findings
        self.findings.setObjectName("defense_findings")
        self.findings.setWordWrap(True)
        self.findings.setStyleSheet("color: #b26a00;")
        self.findings.setVisible(False)
        self.curve_plot = make_plot(
            None,
            "epoch",
            "",
            "test split",
            "%",
            tooltip="clean accuracy (CA), attack success rate (ASR) and robust accuracy "
            "(RA) on the test split at each evaluation; dotted: before the run; "
            "dashed: earlier runs",
        )
        self.curve_plot.setYRange(0, 100, padding=0.02)
        self.curve_plot.setMouseEnabled(x=True, y=False)
        self.curves = {
            key: self.curve_plot.plot(
                [],
                [],
                name=label,
                symbol="o",
                symbolSize=6,
                pen=pg.mkPen(METRIC_COLOURS[key], width=2),
                symbolBrush=METRIC_COLOURS[key],
                symbolPen=METRIC_COLOURS[key],
            )
            for key, label in METRICS
        }
        self.reference = {
            key: pg.InfiniteLine(angle=0, pen=pg.mkPen(METRIC_COLOURS[key], style=pg.QtCore.Qt.PenStyle.DotLine))
            for key, _ in METRICS
            if key != "robust_accuracy"
        }
        for line in self.reference.values():
            line.setVisible(False)
            self.curve_plot.addItem(line)
        self.curve_legend = ZoneLegend(
            {key: METRIC_COLOURS[key] for key, _ in METRICS},
            dict(METRICS),
            {
                "clean_accuracy": "clean accuracy",
                "attack_success_rate": "attack success rate",
                "robust_accuracy": "robust accuracy",
            },
            title="",
        )
        self.curve_legend.setObjectName("defense_curve_legend")
        self.curve_legend.setToolTip("dotted lines: before the run; dashed: earlier runs")
        self.loss_plot = make_plot(
            None, "step", "", "training loss", "", tooltip="cross-entropy of each fine-tuning step's clean batch"
        )
        self.loss_curve = self.loss_plot.plot([], [], pen=pg.mkPen(SERIES["purple"], width=1.5))
        self.result = QTableWidget(len(METRICS) + 2, 3)
        self.result.setObjectName("defense_result")
        self.result.setHorizontalHeaderLabels(["", "before", "after"])
        self.runs_table = QTableWidget(0, 5)
        self.runs_table.setObjectName("defense_runs")
        self.runs_table.setHorizontalHeaderLabels(["run", "CA after", "ASR after", "DER", "time (s)"])
        for table in (self.result, self.runs_table):
            table.verticalHeader().setVisible(False)
            table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 6)
            table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
            table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
            table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.runs: list[dict] = []  # finished runs, kept for comparison
        self.ghosts: list[pg.PlotDataItem] = []
        buttons = QHBoxLayout()
        for b in (self.run_button, self.cancel_button, self.accept_button, self.revert_button):
            buttons.addWidget(b)
        top = QFormLayout()
        top.addRow("Preset", self.preset)
        top.addRow(self.preset_summary)
        self.device.setToolTip("where the run happens: auto takes the GPU when there is one")
        chosen = QHBoxLayout()
        chosen.addWidget(self.choice, 2)
        chosen.addWidget(QLabel("on"))
        chosen.addWidget(self.device, 1)
        top.addRow("Defense", chosen)
        curves = QWidget()
        curves_layout = QVBoxLayout(curves)
        curves_layout.setContentsMargins(0, 0, 0, 0)
        curves_layout.addWidget(self.curve_legend)
        curves_layout.addWidget(self.curve_plot, 1)
        self.plots = QTabWidget()
        self.plots.setObjectName("defense_plots")
        self.plots.addTab(curves, "CA / ASR")
        self.plots.addTab(self.loss_plot, "Loss")
        self.plots.addTab(self.runs_table, "Runs")
        self.plots.setMinimumHeight(180)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.form)
        layout.addWidget(self.error)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.eta)
        layout.addWidget(self.findings)
        layout.addWidget(self.result)
        layout.addWidget(self.plots, 1)
        self.preset.currentIndexChanged.connect(self._preset_chosen)
        self.choice.currentIndexChanged.connect(self._defense_chosen)
        self.form.edited.connect(self._sync_preset)
        self.run_button.clicked.connect(self._run_clicked)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.accept_button.clicked.connect(self.accept_requested)
        self.revert_button.clicked.connect(self.revert_requested)
        self.apply_preset(DEFAULT_PRESET)
        self._fill_result({}, None)
        self.set_state("idle")
        self.redraws = 0
        self._clock = QElapsedTimer()
        self._last_draw = -REDRAW_MS
        self._losses: list[float] = []
        self._total_steps = 0  # the run's step count the loss axis was laid out for
        self._evals: list[EvalInfo] = []

    # ------------------------------------------------------------------ form
    def defense_name(self) -> str:
        """The engine name of the chosen defense (gnft, ft, fp, ftsam, clp)."""
        return self.choice.currentData()

    def select_defense(self, name: str) -> None:
        """Choose a defense by its engine name; the form shows its defaults."""
        self.choice.setCurrentIndex(self.choice.findData(name))

    def preset_name(self) -> str:
        """The preset the form shows now, or "custom"."""
        return self.preset.currentData()

    def apply_preset(self, name: str) -> None:
        """Fill the defense and the form with a named preset's settings."""
        preset = PRESETS[name]
        self.base_preset = name
        for combo, value in ((self.preset, name), (self.choice, preset.defense)):
            combo.blockSignals(True)
            combo.setCurrentIndex(combo.findData(value))
            combo.blockSignals(False)
        self.form.build(DEFENSES[preset.defense].Config, preset.config())
        self._show_summary(preset.summary)

    def _preset_chosen(self, _index: int) -> None:
        if self.preset_name() != CUSTOM:
            self.apply_preset(self.preset_name())

    def _defense_chosen(self, _index: int) -> None:
        self.form.build(DEFENSES[self.defense_name()].Config)
        self._sync_preset()

    def _sync_preset(self) -> None:
        """Show the preset the form's values equal now, or "Custom" (with what it started from)."""
        try:
            config = DEFENSES[self.defense_name()].Config(**self.form.typed())
        except (ValueError, TypeError):
            name = None
        else:
            name = matching_preset(self.defense_name(), config)
        self.preset.blockSignals(True)
        self.preset.setCurrentIndex(self.preset.findData(name or CUSTOM))
        self.preset.blockSignals(False)
        if name is not None:
            self.base_preset = name
            self._show_summary(PRESETS[name].summary)
        else:
            base = PRESETS.get(self.base_preset or "")
            self._show_summary(
                f"Custom settings (started from {base.title})"
                if base and base.defense == self.defense_name()
                else "Custom settings"
            )

    def _show_summary(self, summary: str) -> None:
        """The preset's settings in one line under its name; why it was chosen in the tooltip."""
        settings, _, why = summary.partition(": ")
        self.preset_summary.setText(settings)
        self.preset_summary.setToolTip(summary if why else "")

    @property
    def fields(self) -> dict:
        return self.form.fields

    def config(self):
        """The form's values as the defense's config (raises ValueError naming a bad field)."""
        cls = DEFENSES[self.defense_name()]
        device = self.device.currentData() or self.device.currentText()
        config = cls.Config(**self.form.typed(), device=device, grad_norm_every=1)
        config.validate()
        return config

    def _run_clicked(self) -> None:
        self._sync_preset()
        try:
            config = self.config()
        except Exception as err:
            self.error.setText(str(err))
            self.error.setVisible(True)
            return
        self.error.setText("")
        self.error.setVisible(False)
        self.run_requested.emit(self.defense_name(), config)

    # ------------------------------------------------------------------ live updates
    def set_state(self, state: str) -> None:
        """idle | running | finished (a result waits for Accept/Revert)."""
        self.state = state
        self.progress.setVisible(state == "running")
        self.run_button.setEnabled(state == "idle")
        self.cancel_button.setEnabled(state == "running")
        self.accept_button.setEnabled(state == "finished")
        self.revert_button.setEnabled(state == "finished")

    def start(self, before: dict[str, float]) -> None:
        self._losses, self._evals, self.redraws, self._total_steps = [], [], 0, 0
        self._overlay_runs()
        self.loss_plot.enableAutoRange(x=True)
        for key, line in self.reference.items():
            line.setVisible(before.get(key) is not None)
            if before.get(key) is not None:
                line.setValue(100 * before[key])
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
        if info.phase.startswith(SEARCH_AGAIN_PHASE):  # mid-run (unlearn_refresh): the bar keeps the run's steps
            self.eta.setText(
                f"Searching the trigger again on the model being repaired: step {info.step}/{info.total_steps}"
            )
            return
        if info.phase.startswith(SCAN_PHASE):  # the scan for the trigger to unlearn, before fine-tuning
            domain = info.phase.removeprefix(SCAN_PHASE)
            domains = self.scan_domains if domain in self.scan_domains else [domain]
            done = domains.index(domain) * info.total_steps + info.step  # one bar over every domain
            self.progress.setRange(0, len(domains) * info.total_steps)
            self.progress.setValue(done)
            which = f", {domains.index(domain) + 1} of {len(domains)}" if len(domains) > 1 else ""
            what = "the repaired model for a class left to unlearn" if self._losses else "for the trigger to unlearn"
            self.eta.setText(f"Scanning {what} ({domain}{which}): step {info.step}/{info.total_steps}")
            return
        if info.total_steps != self._total_steps:  # fixed step axis for the run (a later pass lengthens it)
            self._total_steps = info.total_steps
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
        self.eta.setToolTip(f"epoch {info.epoch}")

    def on_eval(self, info: EvalInfo) -> None:
        self._evals.append(info)
        epochs = np.array([e.epoch for e in self._evals])
        for key, curve in self.curves.items():
            values = [getattr(e, key) for e in self._evals]
            if all(v is not None for v in values):
                curve.setData(epochs, 100 * np.asarray(values, dtype=float))

    def finish(
        self,
        before: dict[str, float],
        after: dict[str, float],
        seconds: float,
        name: str = "",
        findings: list[str] | tuple[str, ...] = (),
    ) -> None:
        self._fill_result(before, after, seconds)
        self.show_findings(findings)
        self._keep_run(name or self.defense_name(), before, after, seconds)
        self.eta.setText(f"Finished in {seconds:.1f} s: Accept keeps the repaired model, Revert discards it.")
        self.set_state("finished")

    def show_findings(self, findings: list[str] | tuple[str, ...]) -> None:
        """One warning line per finding under the progress line; hidden when there are none."""
        self.findings.setText("\n".join(f"\u26a0 {f}" for f in findings))
        self.findings.setVisible(bool(findings))

    def _keep_run(self, name: str, before: dict[str, float], after: dict[str, float], seconds: float) -> None:
        """Remember a finished run: a row in the runs table now, dashed curves under the next run."""
        from core.metrics import defense_effectiveness_rating

        der = defense_effectiveness_rating(before, after) if before.get("attack_success_rate") is not None else None
        label = f"{DEFENSE_TITLES.get(name, name)} #{len(self.runs) + 1}"
        curves = {key: curve.getData() for key, curve in self.curves.items()}
        self.runs.append({"label": label, "after": after, "der": der, "seconds": seconds, "curves": curves})
        row = self.runs_table.rowCount()
        self.runs_table.insertRow(row)
        cells = (
            label,
            percent(after.get("clean_accuracy")),
            percent(after.get("attack_success_rate")),
            "" if der is None else f"{der:.3f}",
            f"{seconds:.1f}",
        )
        for c, text in enumerate(cells):
            self.runs_table.setItem(row, c, QTableWidgetItem(text))
        self.runs_table.scrollToBottom()

    def _overlay_runs(self) -> None:
        """Draw every finished run not yet drawn as faint dashed CA/ASR curves."""
        for run in self.runs[len(self.ghosts) // 2 :]:
            for key in ("clean_accuracy", "attack_success_rate"):
                x, y = run["curves"][key]
                colour = pg.mkColor(METRIC_COLOURS[key])
                colour.setAlpha(110)
                ghost = pg.PlotDataItem(
                    [] if x is None else x,
                    [] if y is None else y,
                    pen=pg.mkPen(colour, style=pg.QtCore.Qt.PenStyle.DashLine),
                    name=f"{run['label']} {'CA' if key == 'clean_accuracy' else 'ASR'}",
                )
                self.curve_plot.addItem(ghost)
                self.ghosts.append(ghost)

    def _fill_result(self, before: dict[str, float], after: dict[str, float] | None, seconds: float | None = None):
        rows = [(label, before.get(key), None if after is None else after.get(key)) for key, label in METRICS]
        der = None
        if after is not None and before.get("attack_success_rate") is not None:
            from core.metrics import defense_effectiveness_rating

            der = defense_effectiveness_rating(before, after)
        rows += [("DER", None, der), ("time (s)", None, seconds)]
        tips = {
            "CA": "clean accuracy on the test split",
            "ASR": "attack success rate: triggered clips of other classes classified as the target",
            "RA": "robust accuracy: triggered clips still classified right",
            "DER": "defense effectiveness rating, 0-1: higher is better (ASR removed at little CA cost)",
            "time (s)": "wall time of the run",
        }
        for r, (label, b, a) in enumerate(rows):
            for c, value in enumerate((label, b, a)):
                text = (
                    value
                    if isinstance(value, str)
                    else (
                        ""
                        if value is None
                        else percent(value)
                        if label in ("CA", "ASR", "RA")
                        else f"{value:.3f}"
                        if label == "DER"
                        else f"{value:.1f}"
                    )
                )
                item = QTableWidgetItem(text)
                item.setToolTip(tips[label])
                self.result.setItem(r, c, item)
        fit_rows(self.result)

    def after_value(self, label: str) -> str:
        """The 'after' cell of a result row (CA, ASR, RA, DER, time (s))."""
        for r in range(self.result.rowCount()):
            if self.result.item(r, 0) and self.result.item(r, 0).text() == label:
                return self.result.item(r, 2).text()
        return ""
