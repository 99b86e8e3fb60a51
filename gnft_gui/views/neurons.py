"""Neuron forensics views: gradient-norm bars coloured by zone, a neurons × steps heat map, the CLC/BLC plane.

Fed by engine events: ``on_step`` (per-neuron norms of g1 at every GN-FT step, no extra pass),
``on_neurons`` (a CLC/BLC snapshot: exact before and after a run or from an analysis, the
first-order estimate at each evaluation during a run). Plot items are created once and updated
with ``setData``/``setImage``; step events are throttled to at most one redraw per ``REDRAW_MS``.
Clicking a point in the CLC/BLC plane (or choosing its index) selects a neuron: its values, its
gradient-norm history and its path through the plane across snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import QElapsedTimer, QEvent, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.analysis.zones import ZONES, assign_zones
from core.events import SCAN_PHASE, NeuronStats, StepInfo
from gnft_gui.views.plots import (
    NO_ZONE,
    SERIES,
    ZONE_COLOURS,
    colour_bar,
    make_plot,
    plot_colours,
    set_levels,
    zone_legend,
)

NO_NEURONS_YET = "Run a defense or press Analyse to see the neurons of a layer."
PICK_A_NEURON = "Click a point in the CLC/BLC plane, or choose a neuron's index, to follow that neuron."

__all__ = ["NeuronView", "ZONE_COLOURS", "Snapshot"]

REDRAW_MS = 66
BAR_WIDTH = 0.8


@dataclass
class Snapshot:
    """CLC/BLC of one layer at one moment, and the zones they give (thresholds 0)."""

    label: str
    clc: np.ndarray
    blc: np.ndarray
    zones: list[str]
    epoch: int | None = None

    def counts(self) -> dict[str, int]:
        return {z: self.zones.count(z) for z in ZONES}


class NeuronView(QWidget):
    """Emits ``analyse_requested(layers)`` when the user asks for an analysis of the loaded model."""

    analyse_requested = Signal(list)

    def __init__(self) -> None:
        super().__init__()
        self.layer = QComboBox()
        self.layer.setObjectName("neuron_layer")
        self.analyse_button = QPushButton("Analyse")
        self.analyse_button.setObjectName("analyse")
        self.analyse_button.setToolTip("exact CLC/BLC and gradient norms of the loaded model, in the background")
        self.all_layers = QCheckBox("all layers")
        self.all_layers.setObjectName("analyse_all_layers")
        self.exact_around_runs = QCheckBox("exact zones around runs")
        self.exact_around_runs.setObjectName("exact_around_runs")
        self.exact_around_runs.setToolTip(
            "compute exact CLC/BLC before and after each defense run (during a run the zones are first-order estimates)"
        )
        self.exact_around_runs.setChecked(True)
        self.neuron = QSpinBox()
        self.neuron.setObjectName("neuron_index")
        self.neuron.setPrefix("neuron ")
        self.info = QLabel(NO_NEURONS_YET)
        self.info.setObjectName("neuron_info")
        self.info.setWordWrap(True)
        self.info.setMinimumHeight(2 * self.info.fontMetrics().lineSpacing() + 2)  # two lines: no overlap when small
        self.counts = QLabel("")
        self.counts.setObjectName("zone_counts")
        self.counts.setWordWrap(True)
        self.legend = zone_legend()

        self.norm_plot = make_plot(
            "gradient norm per neuron",
            "neuron",
            "",
            "gradient norm",
            "",
            tooltip="norm of each neuron's weight gradient at the latest step "
            "(or from the analysis); bar colour: the neuron's zone",
        )
        self.norm_plot.setObjectName("norm_plot")
        self.norm_bars = pg.BarGraphItem(x=[], height=[], width=BAR_WIDTH, brush=NO_ZONE, pen=None)
        self.norm_plot.addItem(self.norm_bars)
        self._bar_count = -1  # bars the x range was last fitted to
        self.heat_plot = make_plot(
            "gradient norm over steps",
            "step",
            "",
            "neuron",
            "",
            tooltip="gradient norm of every neuron (rows) at every step (columns) of the current run",
        )
        self.heat_plot.setObjectName("heat_plot")
        self.heat = pg.ImageItem(axisOrder="row-major")
        self.heat_plot.addItem(self.heat)
        self.heat_bar = colour_bar(self.heat_plot, self.heat, "gradient norm")
        self.zone_plot = make_plot(
            "zones: CLC vs BLC",
            "CLC",
            "Δ loss",
            "BLC",
            "Δ loss",
            tooltip="CLC: change of the clean loss (cross-entropy) when the neuron is "
            "zeroed; BLC: change of the backdoor loss. Click a point to select "
            "its neuron; crosses: its path through the snapshots",
        )
        self.zone_plot.setObjectName("zone_plot")
        for angle in (0, 90):
            dashed = pg.mkPen(SERIES["grey"], style=pg.QtCore.Qt.PenStyle.DashLine)
            self.zone_plot.addItem(pg.InfiniteLine(0.0, angle=angle, pen=dashed))
        self.scatter = pg.ScatterPlotItem(size=8, pen=None)
        self.scatter.sigClicked.connect(self._points_clicked)
        self.zone_plot.addItem(self.scatter)
        self.trail = pg.PlotDataItem([], [], symbol="x", symbolSize=10)
        self.zone_plot.addItem(self.trail)
        self.history_plot = make_plot(
            "selected neuron's norm",
            "step",
            "",
            "gradient norm",
            "",
            tooltip="gradient norm of the selected neuron at every step of the run",
        )
        self.history_plot.setObjectName("history_plot")
        self.history_curve = self.history_plot.plot([], [], pen=pg.mkPen(SERIES["blue"], width=1.5))
        self._style_trail()

        top = QHBoxLayout()
        top.addWidget(QLabel("layer"))
        top.addWidget(self.layer, 1)
        top.addWidget(self.analyse_button)
        top.addWidget(self.all_layers)
        top.addWidget(self.exact_around_runs)
        grid = QGridLayout()
        grid.setSpacing(4)
        grid.addWidget(self.norm_plot, 0, 0)
        grid.addWidget(self.heat_plot, 0, 1)
        grid.addWidget(self.zone_plot, 1, 0)
        grid.addWidget(self.history_plot, 1, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.neuron)
        bottom.addWidget(self.counts, 1)
        layout = QVBoxLayout(self)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(self.legend)
        layout.addLayout(grid, 1)
        layout.addLayout(bottom)
        layout.addWidget(self.info)

        self.norms: dict[str, np.ndarray] = {}  # the latest per-neuron norms of each layer
        self._history: dict[str, np.ndarray] = {}  # per layer: neurons × capacity, the first len(steps) filled
        self._range: dict[str, tuple[float, float]] = {}  # per layer: min and max of its history so far
        self._brushes = {zone: pg.mkBrush(colour) for zone, colour in ZONE_COLOURS.items()}
        self._plane_shown: tuple | None = None  # (layer, snapshot id) on the plane now
        self.steps: list[int] = []
        self.snapshots: dict[str, list[Snapshot]] = {}
        self.epoch = 0
        self.selected: int | None = None
        self.redraws = 0
        self._clock = QElapsedTimer()
        self._clock.start()
        self._last_draw = -REDRAW_MS
        self.layer.currentTextChanged.connect(lambda _t: self.redraw())
        self.neuron.valueChanged.connect(self.select_neuron)
        self.analyse_button.clicked.connect(self._analyse_clicked)

    # ------------------------------------------------------------------ feeding
    def set_layers(self, layers: list[str]) -> None:
        """A new model: its analysable layers (the last hidden one chosen), every figure cleared."""
        self.layer.blockSignals(True)
        self.layer.clear()
        self.layer.addItems(layers)
        self.layer.setCurrentIndex(max(0, len(layers) - 2))
        self.layer.blockSignals(False)
        self.norms, self.snapshots = {}, {}
        self.selected = None
        self.begin_run()
        self.info.setText(NO_NEURONS_YET)

    def begin_run(self) -> None:
        """Forget the step history (snapshots stay: the 'before' of this run is the 'after' of the last)."""
        self._history, self._range, self.steps, self.epoch, self._total_steps = {}, {}, [], 0, 0
        for plot in (self.heat_plot, self.history_plot):
            plot.enableAutoRange(x=True)
        self._last_draw = -REDRAW_MS
        if self.selected is None:
            self.info.setText(PICK_A_NEURON)
        self.redraw()

    def on_step(self, info: StepInfo) -> None:
        if info.phase.startswith(SCAN_PHASE):  # a repair's scan for its trigger: no neuron norms
            return
        self.epoch = info.epoch
        if info.total_steps != self._total_steps:  # the run's length: fixed step axes (a later pass lengthens it)
            self._total_steps = info.total_steps
            for plot in (self.heat_plot, self.history_plot):
                plot.setXRange(0, info.total_steps + 1, padding=0)
        if info.grad_norms:
            n = len(self.steps)
            self.steps.append(info.step)
            for name, values in info.grad_norms.items():
                arr = np.asarray(values, dtype=np.float32)
                self.norms[name] = arr
                buf = self._history.get(name)
                if buf is None or buf.shape[1] <= n or buf.shape[0] != arr.size:
                    grown = np.zeros((arr.size, max(64, 2 * (n + 1))), dtype=np.float32)
                    if buf is not None and buf.shape[0] == arr.size:
                        grown[:, :n] = buf[:, :n]
                    buf = self._history[name] = grown
                buf[:, n] = arr
                if arr.size:  # the heat map's colour range, kept up to date per step (no pass over the history)
                    lo, hi = float(arr.min()), float(arr.max())
                    old = self._range.get(name)
                    self._range[name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
        now = self._clock.elapsed()
        if now - self._last_draw >= REDRAW_MS or info.step == info.total_steps:
            self._last_draw = now
            self.redraw(plane=False)

    def on_neurons(self, stats: NeuronStats) -> None:
        values = stats.values
        if values.get("grad_norm") is not None:
            self.norms[stats.layer] = np.asarray(values["grad_norm"], dtype=np.float32)
        if values.get("clc") is not None and values.get("blc") is not None:
            clc, blc = np.asarray(values["clc"], dtype=float), np.asarray(values["blc"], dtype=float)
            zones = assign_zones(torch.from_numpy(clc), torch.from_numpy(blc))
            epoch = self.epoch if self.steps else None
            label = stats.label or "snapshot"
            self.snapshots.setdefault(stats.layer, []).append(Snapshot(label, clc, blc, zones, epoch))
        if self.selected is None:
            self.info.setText(PICK_A_NEURON)
        self.redraw()

    # ------------------------------------------------------------------ drawing
    def latest(self, layer: str | None = None) -> Snapshot | None:
        shots = self.snapshots.get(layer or self.layer.currentText())
        return shots[-1] if shots else None

    def history(self, layer: str | None = None) -> np.ndarray | None:
        """Gradient norms of ``layer`` per step so far: neurons × steps (None before the first step)."""
        buf = self._history.get(layer or self.layer.currentText())
        return None if buf is None else buf[:, : len(self.steps)]

    def redraw(self, plane: bool = True) -> None:
        """Bars, heat map and the selected neuron; the CLC/BLC plane too unless only steps changed."""
        self.redraws += 1
        layer = self.layer.currentText()
        snap = self.latest(layer)
        norms = self.norms.get(layer)
        if norms is not None:
            colours = (
                [self._brushes[z] for z in snap.zones]
                if snap is not None and len(snap.zones) == len(norms)
                else [NO_ZONE] * len(norms)
            )
            self.norm_bars.setOpts(x=np.arange(len(norms)), height=norms, width=BAR_WIDTH, brushes=colours)
        else:
            self.norm_bars.setOpts(x=[], height=[], brushes=[])
        count = 0 if norms is None else len(norms)
        if count != self._bar_count:  # every bar in view, half a bar of margin at both ends
            self._bar_count = count
            if count:
                self.norm_plot.setXRange(-BAR_WIDTH, count - 1 + BAR_WIDTH, padding=0)
            else:
                self.norm_plot.enableAutoRange(x=True)
        image = self.history(layer)
        if image is not None and image.shape[1]:
            lo, hi = self._range.get(layer, (float(image.min()), float(image.max())))
            self.heat.setImage(image, autoLevels=False)
            set_levels(self.heat_bar, self.heat, lo, hi)
            self.heat.setRect(pg.QtCore.QRectF(self.steps[0] - 0.5, -0.5, image.shape[1], image.shape[0]))
        else:
            self.heat.clear()
        if plane or self._plane_shown != (layer, id(snap)):
            self._draw_plane(layer, snap)
        size = len(norms) if norms is not None else (len(snap.clc) if snap is not None else 0)
        self.neuron.blockSignals(True)
        self.neuron.setRange(0, max(0, size - 1))
        self.neuron.blockSignals(False)
        self._draw_selected()

    def _draw_plane(self, layer: str, snap: Snapshot | None) -> None:
        self._plane_shown = (layer, id(snap))
        if snap is not None:
            self.scatter.setData(
                x=snap.clc, y=snap.blc, data=np.arange(len(snap.clc)), brush=[self._brushes[z] for z in snap.zones]
            )
            counts = snap.counts()
            self.counts.setText(f"{snap.label}: " + ", ".join(f"{z} {counts[z]}" for z in ZONES))
        else:
            self.scatter.setData(x=[], y=[])
            self.counts.setText("no CLC/BLC yet for this layer: Analyse, or run a defense with an attack")

    # ------------------------------------------------------------------ selection
    def _points_clicked(self, item, points, event=None) -> None:
        """Select the clicked point; where points overlap, the one nearest the cursor on screen."""
        if not len(points):
            return
        if event is not None:
            at = event.scenePos()

            def distance(p) -> float:
                d = item.mapToScene(p.pos()) - at
                return d.x() ** 2 + d.y() ** 2

            points = sorted(points, key=distance)
        self.select_neuron(int(points[0].data()))

    def select_neuron(self, index: int) -> None:
        """Show neuron ``index`` of the current layer: values, norm history and its CLC/BLC path."""
        self.neuron.blockSignals(True)
        self.neuron.setValue(index)
        self.neuron.blockSignals(False)
        self.selected = index
        self._draw_selected()

    def _draw_selected(self) -> None:
        index = self.selected
        layer = self.layer.currentText()
        shots = [s for s in self.snapshots.get(layer, []) if index is not None and index < len(s.clc)]
        image = self.history(layer)
        if index is None or (not shots and image is None and layer not in self.norms):
            self.trail.setData([], [])
            self.history_curve.setData([], [])
            return
        self.trail.setData([s.clc[index] for s in shots], [s.blc[index] for s in shots])
        if image is not None and index < image.shape[0]:
            self.history_curve.setData(np.asarray(self.steps), image[index])
        else:
            self.history_curve.setData([], [])
        parts = [f"{layer} neuron {index}"]
        norms = self.norms.get(layer)
        if norms is not None and index < len(norms):
            parts.append(f"gradient norm {norms[index]:.4g}")
        for s in shots[-3:]:
            parts.append(f"{s.label}: CLC {s.clc[index]:+.4f}, BLC {s.blc[index]:+.4f} ({s.zones[index]})")
        self.info.setText("; ".join(parts))

    def _style_trail(self) -> None:
        """The selected neuron's path in the text colour: black on a light background, white on a dark one."""
        fg = plot_colours().foreground
        self.trail.setPen(pg.mkPen(fg, width=1.5))
        self.trail.setSymbolPen(pg.mkPen(fg, width=1.5))
        self.trail.setSymbolBrush(pg.mkBrush(fg))

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        palette_events = (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange)
        if hasattr(self, "trail") and event.type() in palette_events:  # (not while being built)
            self._style_trail()

    def _analyse_clicked(self) -> None:
        layers = (
            [self.layer.itemText(i) for i in range(self.layer.count())]
            if self.all_layers.isChecked()
            else [self.layer.currentText()]
        )
        if layers and layers[0]:
            self.analyse_requested.emit(layers)
