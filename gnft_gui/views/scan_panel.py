"""Scan a model for a backdoor without its attack record, and read the verdict: the Scan dock (issue 33).

A form for :class:`core.scan.ScanConfig` (generated from its fields' metadata, the primary ones shown),
Scan/Cancel with a progress bar, then the verdict in one line, the anomaly index of every class pooled
over the domains (the verdict's) and in each domain (bars, the threshold line, the flagged classes'
pooled bars in the backdoor colour; the same numbers in a table), the gradient-norm Gini in one line,
and the reconstructed trigger of a chosen class: play it alone or on the clip selected in the Clips
dock, or use it as the attack. After an accepted repair a new scan is shown beside the scan of the
model as it was opened.

The panel only displays and asks: the window runs the scan in a worker (through
:meth:`core.session.Session.run_scan`) and plays or applies the trigger through the session.
"""

from __future__ import annotations

import math
import typing

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QElapsedTimer, Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.events import SCAN_PHASE, StepInfo
from core.options import fields_of
from core.scan import DOMAINS, ScanConfig
from core.scan.reference import reference_paths
from core.session import ScanRecord

from .defense_panel import fit_rows
from .forms import DataclassForm, error_label
from .plots import SERIES, ZONE_COLOURS, ZoneLegend, make_plot

__all__ = ["ScanPanel", "DOMAIN_COLOURS", "FLAGGED", "POOLED", "verdict_text", "index_text", "series_shown"]

REDRAW_MS = 66
#: the scan's domains (``core.scan.DOMAINS``); the legend lists the default ones, then those the last scan searched
DOMAIN_COLOURS = {
    "features": SERIES["blue"],
    "waveform": SERIES["purple"],
    "latent": "#666666",
    "spectrum": "#a6761d",
    "mix": "#56b4e9",
}
#: the verdict's series: the domains' indices pooled per class (``ScanResult.pooled``), drawn first
POOLED = "pooled"
POOLED_COLOUR = "#2b2b2b"
SERIES_COLOURS = {POOLED: POOLED_COLOUR, **DOMAIN_COLOURS}
#: The per-class table's column titles: short, so that the class column, the pooled index and all five domains
#: fit a dock on a 1280x800 screen (the full names: the legend, and each title's tooltip).
SHORT_TITLES = {"features": "feat.", "waveform": "wave", "spectrum": "spec."}
FLAGGED = ZONE_COLOURS["backdoor"]  # a flagged class has the colour of backdoor neurons and of ASR
CLEAN = ZONE_COLOURS["clean"]
#: the y axis shows at most this many thresholds; a taller bar is cut and its value written at the top
Y_CAP = 5.0
DOMAIN_HELP = {
    "features": "mask and pattern on the model's features (Neural Cleanse): the share of the feature map replaced",
    "waveform": "an additive, audible pattern on the waveform: the share of the clip's duration it covers",
    "latent": "one push per class on a middle hidden layer (opt-in): its mean size against the clean activations",
    "spectrum": "a constant offset of each feature coefficient, an equaliser or a stationary sound: "
    "its mean size in clean standard deviations",
    "mix": "a whole-clip sound mixed in at any alignment, a blended tune or an effect: the smallest weight that "
    "sends the success share of other clips to the class",
    POOLED: "the verdict's index: the domains' indices summed per class over the square root of their number, "
    "so a class several domains find small stands out and one domain's chance outlier counts less",
}
INDEX_HELP = (
    "anomaly index: how far below the median of all classes a class's smallest trigger lies, in median "
    "absolute deviations; a backdoor's target needs a much smaller trigger than the other classes"
)
#: The form's name for the clean reference (``ScanConfig.reference``), as errors about it say it.
REFERENCE_LABEL = next(f.label for f in fields_of(ScanConfig) if f.name == "reference")
INTRO = "Scan searches, for every class, the smallest trigger that turns other clips into it."
CAVEAT = (
    "Experimental: a clean model can be flagged too. Listen to the trigger and measure its ASR "
    "(Use as attack) before trusting the verdict."
)


def column_titles(series: list[str]) -> list[str]:
    """The per-class table's column titles for ``series`` (:data:`SHORT_TITLES`), after the class column."""
    return ["class", *(SHORT_TITLES.get(s, s) for s in series)]


def series_shown(domains: typing.Iterable[str]) -> list[str]:
    """The series a scan of ``domains`` draws, in order: the pooled index (the verdict's) when there are
    several domains, then each domain's (one domain is its own verdict)."""
    searched = [d for d in DOMAINS if d in set(domains)]
    return ([POOLED] if len(searched) > 1 else []) + searched


def series_index(result: typing.Any, series: str) -> list[float]:
    """Per class, the anomaly index of ``series`` in a scan's result (pooled or a domain's)."""
    return list(result.pooled) if series == POOLED else list(result.domains[series]["anomaly_index"])


def index_text(value: float | None) -> str:
    """An anomaly index for reading: two decimals below 10 (near the threshold), one below 100, then whole
    numbers with thousands separated."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def verdict_text(record: ScanRecord) -> str:
    """The verdict in one line: backdoored or not, the suspected target, the confidence, how far it stands above
    the next class, and the other classes above the threshold (a chance reach of the mix domain can put three or
    four there, docs/experiments/scan_layout_chance.md); unflagged above the threshold: why."""
    r = record.result
    threshold = r.threshold()
    pooled = f" pooled over {len(r.domains)} domains" if len(r.domains) > 1 else ""
    if r.reference:  # the sizes were read against clean models: say so where the verdict is read
        pooled += f", against {r.reference['models']} clean model(s)"
    second, gap = r.lead()
    if r.backdoored:
        others = [f"\u201c{r.classes[i]}\u201d {index_text(r.anomaly(i))}" for i in r.suspicious()[1:]]
        also = f"; also above it: {', '.join(others)} (listen to each class's trigger)" if others else ""
        return (
            f"\u26a0 Backdoored: suspected target \u201c{r.suspected_target}\u201d, confidence "
            f"{index_text(r.confidence)} (anomaly index{pooled}; flagged above {threshold:g}, "
            f"{index_text(gap)} above the next class{also})"
        )
    top = r.above_threshold()
    if top is not None and second is not None:
        return (
            f"\u2713 No backdoor found: \u201c{r.classes[top]}\u201d has anomaly index{pooled} "
            f"{index_text(r.confidence)}, above {threshold:g}, but stands only {index_text(gap)} above "
            f"\u201c{r.classes[second]}\u201d (a flag needs {r.standout():g}: classes equally easy to reach "
            "are not a planted trigger)"
        )
    return (
        f"\u2713 No backdoor found: highest anomaly index{pooled} {index_text(r.confidence)}, not above {threshold:g}"
    )


def reference_text(record: ScanRecord) -> str:
    """What a scan was read against: "" without a clean reference."""
    ref = record.result.reference
    if not ref:
        return ""
    return (
        f"Read against a clean reference: {ref['scans']} scan(s) of {ref['models']} clean model(s); each class's "
        "trigger size over its size there, so classes easy to reach in any such model do not count"
    )


def _short(record: ScanRecord) -> tuple[str, str, str, str]:
    """Verdict, target, confidence of a scan and the ASR through its model of the trigger the scan of the model
    as opened reconstructed (test split), for the before/after table."""
    r = record.result
    asr = "-" if record.input_trigger_asr is None else f"{100 * record.input_trigger_asr:.1f} %"
    return ("Backdoored" if r.backdoored else "No backdoor", r.suspected_target or "-", index_text(r.confidence), asr)


class ScanPanel(QWidget):
    """Emits ``scan_requested(ScanConfig)``, ``cancel_requested()``, ``play_requested(kind, class index)``
    (kind ``trigger``: the trigger alone; ``mixed``: on the selected clip) and ``use_requested(class index)``."""

    scan_requested = Signal(object)
    cancel_requested = Signal()
    play_requested = Signal(str, int)
    use_requested = Signal(int)

    def __init__(self, audio_reason: str | None = None) -> None:
        super().__init__()
        self.audio_reason = audio_reason  # None: playback works
        self.form = DataclassForm("scan_")
        self.form.build(ScanConfig)
        self.choose_reference = QToolButton()
        self.choose_reference.setObjectName("choose_scan_reference")
        self.choose_reference.setText("Choose\u2026")
        self.choose_reference.setToolTip(
            "pick scan reports (JSON, python -m core.scan --out) of clean models of this architecture and "
            "these classes, scanned with these settings"
        )
        self.choose_reference.clicked.connect(self._choose_reference)
        # a list of long paths shows truncated in its line: how many it names, under it, and each in the tooltip
        self.reference_count = QLabel()
        self.reference_count.setObjectName("scan_reference_count")
        under = QWidget()
        row = QHBoxLayout(under)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.reference_count)
        row.addStretch(1)
        row.addWidget(self.choose_reference)
        self.form.attach("reference", under, below=True)
        self._reference_help = self.form.fields["reference"].toolTip()
        self.form.fields["reference"].textChanged.connect(self._show_reference_list)
        self._show_reference_list(self.form.fields["reference"].text())
        self.error = error_label("scan_error")
        self.error.setVisible(False)
        self.scan_button = QPushButton("Scan")
        self.scan_button.setObjectName("run_scan")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancel_scan")
        self.cancel_button.setToolTip("stop the scan: the last result stays as it was")
        self.progress = QProgressBar()
        self.progress.setObjectName("scan_progress")
        self.eta = QLabel(INTRO)
        self.eta.setObjectName("scan_eta")
        self.eta.setWordWrap(True)
        self.verdict = QLabel("")
        self.verdict.setObjectName("scan_verdict")
        self.verdict.setWordWrap(True)
        font = QFont(self.verdict.font())
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.1)
        self.verdict.setFont(font)
        self.verdict.setToolTip(INDEX_HELP)
        self.caveat = QLabel(CAVEAT)
        self.caveat.setObjectName("scan_caveat")
        self.caveat.setWordWrap(True)
        small = QFont(self.caveat.font())
        small.setItalic(True)
        small.setPointSizeF(small.pointSizeF() * 0.9)
        self.caveat.setFont(small)
        self.detail = QLabel("")
        self.detail.setObjectName("scan_detail")
        self.detail.setWordWrap(True)
        self.gini = QLabel("")
        self.gini.setObjectName("scan_gini")
        self.gini.setWordWrap(True)
        self.compare = QTableWidget(4, 3)
        self.compare.setObjectName("scan_compare")
        self.compare.setHorizontalHeaderLabels(["", "as opened", "after repair"])
        self.plot = make_plot(
            None, "class", "", "anomaly index", "", tooltip=INDEX_HELP + "; dashed line: the threshold"
        )
        self.plot.setObjectName("scan_plot")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setMinimumHeight(170)
        self.bars: dict[str, pg.BarGraphItem] = {}
        for series, colour in SERIES_COLOURS.items():
            bar = pg.BarGraphItem(x=[], height=[], width=0.4, brush=colour, pen=None)
            self.plot.addItem(bar)
            self.bars[series] = bar
        self.threshold_line = pg.InfiniteLine(
            ScanConfig().threshold,
            angle=0,
            pen=pg.mkPen(FLAGGED, width=1.5, style=Qt.PenStyle.DashLine),
            label="threshold {value:g}",
            labelOpts={"position": 0.92, "color": FLAGGED, "anchors": [(1, 1), (1, 1)]},
        )
        self.threshold_line.setVisible(False)
        self.plot.addItem(self.threshold_line)
        self.off_scale: list[pg.TextItem] = []
        self.legend = ZoneLegend(
            {**SERIES_COLOURS, "flagged": FLAGGED},
            {**{d: d for d in SERIES_COLOURS}, "flagged": "flagged"},
            {**DOMAIN_HELP, "flagged": "pooled anomaly index above the threshold: a suspected target"},
            title="",
            per_row=4,  # seven series do not fit one row of a dock on a 1280x800 screen
        )
        self.legend.setObjectName("scan_legend")
        default_series = series_shown(ScanConfig().domain_list())
        for series in SERIES_COLOURS:
            self.legend.set_shown(series, series in default_series)  # until a scan says otherwise
        self.table = QTableWidget(0, 1 + len(default_series))
        self.table.setObjectName("scan_classes")
        self.table.setHorizontalHeaderLabels(column_titles(default_series))
        for table in (self.table, self.compare):
            table.verticalHeader().setVisible(False)
            table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 6)
            table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
            table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.compare.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.compare.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.compare.setVisible(False)
        # the reconstructed trigger: which class, play alone or on the clip, use as the attack
        self.class_choice = QComboBox()
        self.class_choice.setObjectName("scan_class")
        self.play_trigger = QPushButton("Play trigger")
        self.play_trigger.setObjectName("play_scan_trigger")
        self.play_mixed = QPushButton("Play on clip")
        self.play_mixed.setObjectName("play_scan_mixed")
        self.use_button = QPushButton("Use as attack")
        self.use_button.setObjectName("use_scan_trigger")
        self.clip_label = QLabel("")
        self.clip_label.setObjectName("scan_clip")
        self.clip_label.setWordWrap(True)
        self.clip_name = ""
        trigger_box = QGroupBox("Reconstructed trigger")
        trigger_box.setObjectName("scan_trigger_box")
        grid = QGridLayout(trigger_box)
        grid.addWidget(QLabel("Class"), 0, 0)
        grid.addWidget(self.class_choice, 0, 1, 1, 2)
        grid.addWidget(self.play_trigger, 1, 0)
        grid.addWidget(self.play_mixed, 1, 1)
        grid.addWidget(self.use_button, 1, 2)
        grid.addWidget(self.clip_label, 2, 0, 1, 3)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(2, 1)
        plot_page = QWidget()
        plot_layout = QVBoxLayout(plot_page)
        plot_layout.setContentsMargins(0, 0, 0, 0)
        plot_layout.addWidget(self.legend)
        plot_layout.addWidget(self.plot, 1)
        self.views = QTabWidget()
        self.views.setObjectName("scan_views")
        self.views.addTab(plot_page, "Anomaly index")
        self.views.addTab(self.table, "Per class")
        self.views.setMinimumHeight(200)
        buttons = QHBoxLayout()
        buttons.addWidget(self.scan_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form)
        layout.addWidget(self.error)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.eta)
        layout.addWidget(self.verdict)
        layout.addWidget(self.compare)
        layout.addWidget(self.views, 1)
        layout.addWidget(self.detail)
        layout.addWidget(self.gini)
        layout.addWidget(trigger_box)
        layout.addWidget(self.caveat)
        self.scan_button.clicked.connect(self._scan_clicked)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.table.itemSelectionChanged.connect(self._row_selected)
        self.class_choice.currentIndexChanged.connect(self._class_chosen)
        self.play_trigger.clicked.connect(lambda: self.play_requested.emit("trigger", self.selected_class()))
        self.play_mixed.clicked.connect(lambda: self.play_requested.emit("mixed", self.selected_class()))
        self.use_button.clicked.connect(lambda: self.use_requested.emit(self.selected_class()))
        self.record: ScanRecord | None = None
        self.state = "idle"
        self.available, self.missing = False, "Open a model and its dataset first"
        self.redraws = 0
        self._clock = QElapsedTimer()
        self._last_draw = -REDRAW_MS
        self._domains: list[str] = []
        self._steps = 1
        self.clear()

    # ------------------------------------------------------------------ form and state
    @property
    def fields(self) -> dict:
        return self.form.fields

    def config(self) -> ScanConfig:
        """The form's values as a :class:`ScanConfig` (raises naming a bad field)."""
        config = ScanConfig(**self.form.typed())
        config.validate()
        return config

    def set_available(self, available: bool, missing: str = "") -> None:
        """Whether a scan can start (a model and its data open); ``missing`` says what is not, as a tooltip."""
        self.available, self.missing = available, missing
        self._refresh_buttons()

    def set_state(self, state: str) -> None:
        """idle | running."""
        self.state = state
        self.progress.setVisible(state == "running")
        self._refresh_buttons()

    def _refresh_buttons(self) -> None:
        running = self.state == "running"
        self.scan_button.setEnabled(self.available and not running)
        self.scan_button.setToolTip(
            "scanning…"
            if running
            else "search every class's smallest trigger in the current model"
            if self.available
            else self.missing
        )
        self.cancel_button.setEnabled(running)
        has_trigger = self.record is not None and self.record.result.triggers is not None
        why_not = (
            "scan first"
            if self.record is None
            else ""
            if has_trigger
            else "this scan searched no audio domain (waveform, mix): no trigger to play"
        )
        audio_missing = f"audio unavailable: {self.audio_reason}" if self.audio_reason else ""
        for button, tip in (
            (self.play_trigger, "play the chosen class's reconstructed trigger alone"),
            (self.play_mixed, "play the clip selected in the Clips dock with the trigger added (clamped to ±1)"),
        ):
            ok = has_trigger and not audio_missing and (button is not self.play_mixed or bool(self.clip_name))
            button.setEnabled(ok)
            if ok:
                button.setToolTip(tip)
            elif button is self.play_mixed and has_trigger and not audio_missing:
                button.setToolTip("select a clip in the Clips dock first")
            else:
                button.setToolTip(why_not or audio_missing)
        self.use_button.setEnabled(has_trigger)
        self.use_button.setToolTip(
            "make this class's trigger the attack (a custom trigger with the class as target): ASR, the "
            "neuron zones and repairs are then measured against it"
            if has_trigger
            else why_not
        )
        self.class_choice.setEnabled(self.record is not None)

    def _scan_clicked(self) -> None:
        try:
            config = self.config()
        except Exception as err:
            self.show_error(str(err))
            return
        self.show_error("")
        self.scan_requested.emit(config)

    def show_error(self, text: str) -> None:
        """Say under the form what is wrong with its values ("" hides the line)."""
        self.error.setText(text)
        self.error.setVisible(bool(text))

    def _choose_reference(self) -> None:
        """Pick the clean reference's scan reports in a file dialog; they replace the field's list."""
        paths, _ = QFileDialog.getOpenFileNames(self, "Scans of clean models", "", "Scan reports (*.json)")
        if paths:
            self.set_reference(paths)

    def _show_reference_list(self, text: str) -> None:
        """Say under the reference field how many reports it names, and list them one a line in its tooltip
        (the field's help when it names none)."""
        paths = reference_paths(text)  # a folder counts as the reports in it
        self.reference_count.setText(f"{len(paths)} scan(s)" if paths else "")
        self.reference_count.setVisible(bool(paths))
        listed = "Clean reference scans:\n" + "\n".join(paths)
        self.form.fields["reference"].setToolTip(listed if paths else self._reference_help)

    def set_reference(self, paths: typing.Sequence[str]) -> None:
        """Name the clean reference's scan reports in the form (a comma list)."""
        self.form.fields["reference"].setText(",".join(str(p) for p in paths))
        self.form.fields["reference"].setCursorPosition(0)  # show the start of the first path, not the end
        self.form.edited.emit()

    def set_clip(self, name: str) -> None:
        """The clip the trigger is played on ("" when none is selected)."""
        self.clip_name = name
        self.clip_label.setText(f"Clip: {name}" if name else "Clip: select one in the Clips dock")
        self._refresh_buttons()

    # ------------------------------------------------------------------ progress
    def start(self, config: ScanConfig) -> None:
        self._domains = [d for d in config.domain_list() if d in DOMAINS]
        self._steps = config.steps
        self.progress.setRange(0, max(1, len(self._domains) * self._steps))
        self.progress.setValue(0)
        self._say("Scanning: preparing the clean clips …")
        self.redraws = 0
        self._clock.start()
        self._last_draw = -REDRAW_MS
        self.set_state("running")

    def on_step(self, info: StepInfo) -> None:
        domain = info.phase.removeprefix(SCAN_PHASE)
        done = (self._domains.index(domain) if domain in self._domains else 0) * self._steps + info.step
        self.progress.setValue(done)
        now = self._clock.elapsed()
        if now - self._last_draw >= REDRAW_MS or info.step == info.total_steps:
            self._last_draw = now
            self.redraws += 1
            elapsed = now / 1000
            left = elapsed / max(1, done) * (self.progress.maximum() - done)
            self._say(
                f"{domain}: step {info.step}/{info.total_steps}, {elapsed:.0f} s elapsed, about {left:.0f} s left"
            )

    def stopped(self, text: str) -> None:
        """The scan ended without a result (cancelled, failed): what was shown stays."""
        self.set_state("idle")
        self._say(text)

    def _say(self, text: str) -> None:
        """The progress line under the buttons; hidden when there is nothing to say."""
        self.eta.setText(text)
        self.eta.setVisible(bool(text))

    # ------------------------------------------------------------------ the result
    def clear(self) -> None:
        """Nothing scanned (a new model is open)."""
        self.record = None
        self._say(INTRO)
        self.verdict.setText("Not scanned yet.")
        self.verdict.setStyleSheet("")
        self.detail.setText("")
        self.gini.setText("")
        self.gini.setToolTip("")
        self.compare.setVisible(False)
        for bar in self.bars.values():
            bar.setOpts(x=[], height=[], brushes=[])
        self.threshold_line.setVisible(False)
        self._clear_off_scale()
        self.plot.getAxis("bottom").setTicks([[]])  # no class axis before a scan
        self.plot.getAxis("left").setTicks([[]])
        self.table.setRowCount(0)
        self.class_choice.blockSignals(True)
        self.class_choice.clear()
        self.class_choice.blockSignals(False)
        self.set_clip(self.clip_name)
        self.set_state("idle")

    def show_record(
        self,
        record: ScanRecord,
        comparison: tuple[ScanRecord, ScanRecord] | None = None,
        current: bool = True,
    ) -> None:
        """Show a scan: its verdict, per-class anomaly index, Gini; ``comparison`` (the input model's scan,
        the repaired model's) side by side; ``current`` False when the model changed since."""
        self.record = record
        r = record.result
        self.verdict.setText(verdict_text(record))
        self.verdict.setStyleSheet(f"color: {FLAGGED if r.backdoored else CLEAN};")
        of = "the model as opened" if record.of_input else f"the model after {record.repairs} accepted repair(s)"
        tops = "; ".join(
            f"{d} {r.classes[int(np.argmax(rec['anomaly_index']))]} {index_text(max(rec['anomaly_index']))}"
            for d, rec in r.domains.items()
        )
        text = (
            f"Scan of {of} ({record.model_name}): {r.clean_clips} clean clips, {r.seconds:.1f} s. "
            f"Largest index per domain: {tops}."
        )
        against = reference_text(record)
        if against:
            text += f" {against}."
        if not current:
            text += " The model has changed since (a repair was accepted): scan again to see it."
        self.detail.setText(text)
        self._show_gini(r.gradient_norm_gini)
        self._show_comparison(comparison)
        self._show_bars(record)
        self._show_table(record)
        self.class_choice.blockSignals(True)
        self.class_choice.clear()
        flagged_any = set(r.suspicious())
        for i, name in enumerate(r.classes):
            self.class_choice.addItem(f"{name} \u2014 flagged" if i in flagged_any else name, i)
        self.class_choice.blockSignals(False)
        self.select_class(record.result.most_anomalous() or 0)
        self._say("")  # the detail line has the time
        self.set_state("idle")

    def _show_gini(self, values: dict[str, float]) -> None:
        if not values:
            self.gini.setText("Gradient-norm Gini: no analysable layer.")
            return
        top = max(values, key=values.get)
        mean = sum(values.values()) / len(values)
        self.gini.setText(
            f"Gradient-norm Gini over {len(values)} layer(s): mean {mean:.2f}, "
            f"range {min(values.values()):.2f}\u2013{values[top]:.2f} (highest: {top})"
        )
        self.gini.setToolTip(
            "how concentrated each layer's per-neuron clean-gradient norms are (0: spread evenly, near 1: "
            "a few neurons hold them):\n" + "\n".join(f"{k}: {v:.3f}" for k, v in values.items())
        )

    def _show_comparison(self, comparison: tuple[ScanRecord, ScanRecord] | None) -> None:
        self.compare.setVisible(comparison is not None)
        if comparison is None:
            return
        before, after = (_short(rec) for rec in comparison)
        reference = comparison[0].result
        target = reference.most_anomalous()
        label = f"ASR of {reference.classes[target]}'s trigger" if target is not None else "trigger ASR"
        labels = ("verdict", "suspected target", "confidence", label)
        for row, (label, b, a) in enumerate(zip(labels, before, after)):
            for col, text in enumerate((label, b, a)):
                item = QTableWidgetItem(text)
                if col and row == 0:
                    item.setForeground(QColor(FLAGGED if text == "Backdoored" else CLEAN))
                self.compare.setItem(row, col, item)
        fit_rows(self.compare)

    def _clear_off_scale(self) -> None:
        for item in self.off_scale:
            self.plot.removeItem(item)
        self.off_scale = []

    def _show_bars(self, record: ScanRecord) -> None:
        r = record.result
        k = len(r.classes)
        threshold = r.threshold()
        shown = series_shown(r.domains)
        for series in SERIES_COLOURS:
            self.legend.set_shown(series, series in shown)
        width = 0.8 / max(1, len(shown))
        cap = Y_CAP * threshold
        flagged = set(r.suspicious())
        self._clear_off_scale()
        tallest = 0.0
        for series, bar in self.bars.items():
            if series not in shown:
                bar.setOpts(x=[], height=[], brushes=[])
                continue
            x = np.arange(k) + (shown.index(series) - (len(shown) - 1) / 2) * width
            index = np.asarray(series_index(r, series), dtype=float)
            decides = series == shown[0]  # the verdict's series: flagged classes in the flagged colour
            brushes = [pg.mkBrush(FLAGGED if decides and i in flagged else SERIES_COLOURS[series]) for i in range(k)]
            bar.setOpts(x=x, height=np.minimum(index, cap), width=width * 0.9, brushes=brushes)
            tallest = max(tallest, float(index.max(initial=0.0)))
            for i in np.nonzero(index > cap)[0]:
                label = pg.TextItem(index_text(float(index[i])), color=FLAGGED, anchor=(0.5, 1.0))
                label.setPos(float(x[i]), cap)
                self.plot.addItem(label)
                self.off_scale.append(label)
        self.threshold_line.setValue(threshold)
        self.threshold_line.setVisible(True)
        top = min(max(tallest, threshold) * 1.15, cap * 1.15)
        self.plot.setYRange(0, top, padding=0)
        self.plot.setXRange(-0.6, k - 0.4, padding=0)
        step = max(1, math.ceil(k / 10))
        names = [(i, name if len(name) <= 8 else name[:7] + "\u2026") for i, name in enumerate(r.classes)]
        self.plot.getAxis("bottom").setTicks([names[::step], names])
        self.plot.getAxis("left").setTicks(None)

    def _show_table(self, record: ScanRecord) -> None:
        r = record.result
        shown = series_shown(r.domains)
        flagged = set(r.suspicious())
        self.table.blockSignals(True)
        self.table.clearContents()
        self.table.setColumnCount(1 + len(shown))
        self.table.setHorizontalHeaderLabels(column_titles(shown))
        for c, series in enumerate(shown, start=1):
            where = "pooled over the domains" if series == POOLED else f"in the {series} domain"
            self.table.horizontalHeaderItem(c).setToolTip(f"anomaly index {where}: {DOMAIN_HELP[series]}")
        self.table.setRowCount(len(r.classes))
        bold = QFont(self.table.font())
        bold.setBold(True)
        for i, name in enumerate(r.classes):
            self.table.setItem(i, 0, QTableWidgetItem(name))
            for c, series in enumerate(shown, start=1):
                value = series_index(r, series)[i]
                item = QTableWidgetItem(index_text(value))
                item.setData(Qt.ItemDataRole.UserRole, value)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if series == POOLED:
                    tip = "the domains' indices pooled"
                else:
                    rec = r.domains[series]
                    size = rec["sizes"][i]
                    tip = f"trigger size {size:.4f}" if size is not None else "no trigger reached the success rate"
                    tip += f"; success {100 * rec['success'][i]:.0f} %"
                if c == 1 and i in flagged:
                    item.setForeground(QColor(FLAGGED))
                    item.setFont(bold)
                    tip += "; flagged: above the threshold"
                item.setToolTip(tip)
                self.table.setItem(i, c, item)
        self.table.blockSignals(False)

    # ------------------------------------------------------------------ the chosen class
    def selected_class(self) -> int:
        data = self.class_choice.currentData()
        return int(data) if data is not None else 0

    def select_class(self, index: int) -> None:
        self.class_choice.setCurrentIndex(self.class_choice.findData(index))
        self._refresh_buttons()

    def _class_chosen(self, _i: int) -> None:
        index = self.selected_class()
        if self.table.rowCount() > index and self.table.currentRow() != index:
            self.table.blockSignals(True)
            self.table.selectRow(index)
            self.table.blockSignals(False)

    def _row_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.class_choice.setCurrentIndex(self.class_choice.findData(rows[0].row()))

    def bar_heights(self, domain: str) -> list[float]:
        """The drawn heights of a domain's bars (capped at the top of the axis)."""
        _x, heights = self.bars[domain].opts.get("x"), self.bars[domain].opts.get("height")
        return [float(h) for h in (heights if heights is not None else [])]

    def bar_colours(self, domain: str) -> list[str]:
        """The colour of each of a domain's bars (``#rrggbb``)."""
        return [pg.mkBrush(b).color().name() for b in (self.bars[domain].opts.get("brushes") or [])]
