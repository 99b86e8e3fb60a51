"""The shared look of the application's plots: readable at a glance, in the desktop's own colours.

- :func:`make_plot` gives a :class:`Plot` (a ``pg.PlotWidget``) with a short title, labelled axes
  with explicit units and no SI-prefix auto-scaling (an empty axis never reads "mHz"), a small
  minimum size so it shrinks with the window, and background / text colours from the
  QApplication palette (light on a light desktop, dark on a dark one), re-applied when the
  palette changes.
- :func:`colour_bar` adds a labelled ``pg.ColorBarItem`` to the right of a plot for an image;
  :func:`set_levels` updates the image and its bar together (cheap: call it on every redraw).
- :func:`zone_legend` is a row of coloured swatches and names, placed outside the data area.

Data colours (:data:`ZONE_COLOURS`, :data:`NO_ZONE`, :data:`SERIES`) are mid-luminance colours
from the Okabe-Ito palette, distinguishable from each other (also for the colour-blind) and
readable on both white and near-black backgrounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import QApplication, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from core.analysis.zones import ZONE_COLOURS

__all__ = [
    "ZONE_COLOURS",
    "NO_ZONE",
    "ZONE_NAMES",
    "ZONE_HELP",
    "SERIES",
    "MIN_PLOT_SIZE",
    "PlotColours",
    "Plot",
    "ZoneLegend",
    "make_plot",
    "set_axis_label",
    "plot_colours",
    "is_dark",
    "apply_palette",
    "colour_bar",
    "reserve_colour_bar_space",
    "set_levels",
    "zone_legend",
]

NO_ZONE = "#1f78c8"  # bars before any CLC/BLC of the layer is known
ZONE_NAMES = {**{z: z for z in ZONE_COLOURS}, "unknown": "no zones yet"}
ZONE_HELP = {
    "clean": "zeroing the neuron raises the clean loss only (CLC > 0, BLC ≤ 0)",
    "backdoor": "zeroing the neuron raises the backdoor loss only (BLC > 0, CLC ≤ 0): a backdoor suspect",
    "hybrid": "zeroing the neuron raises both losses (CLC > 0, BLC > 0)",
    "redundant": "zeroing the neuron raises neither loss",
    "unknown": "no CLC/BLC for this layer yet (Analyse, or run a defense with an attack set)",
}
SERIES = {
    "blue": "#1f78c8",
    "vermillion": "#d55e00",
    "green": "#009e73",
    "purple": "#cc79a7",
    "orange": "#e69f00",
    "grey": "#999999",
}
MIN_PLOT_SIZE = (160, 120)
TITLE_SIZE = "9pt"
LABEL_SIZE = "9pt"
TITLE_HEIGHT = 20
NO_TITLE_PAD = 8
SIDES = ("left", "bottom", "right", "top")


@dataclass(frozen=True)
class PlotColours:
    background: QColor
    foreground: QColor  # text, tick labels
    axis: QColor  # axis lines and ticks: the text colour, softened towards the background


def _palette(palette: QPalette | None) -> QPalette:
    if palette is not None:
        return palette
    app = QApplication.instance()
    return app.palette() if app is not None else QPalette()


def plot_colours(palette: QPalette | None = None) -> PlotColours:
    """Plot colours from ``palette`` (default: the application's): Base behind the data, Text for text."""
    pal = _palette(palette)
    bg, fg = QColor(pal.color(QPalette.ColorRole.Base)), QColor(pal.color(QPalette.ColorRole.Text))
    if abs(bg.lightnessF() - fg.lightnessF()) < 0.3:  # a palette without contrast: fall back to Window/WindowText
        bg, fg = QColor(pal.color(QPalette.ColorRole.Window)), QColor(pal.color(QPalette.ColorRole.WindowText))
    axis = QColor(
        round(0.7 * fg.red() + 0.3 * bg.red()),
        round(0.7 * fg.green() + 0.3 * bg.green()),
        round(0.7 * fg.blue() + 0.3 * bg.blue()),
    )
    return PlotColours(bg, fg, axis)


def is_dark(palette: QPalette | None = None) -> bool:
    return plot_colours(palette).background.lightnessF() < 0.5


def _style_axis(axis: pg.AxisItem, colours: PlotColours) -> None:
    axis.setPen(colours.axis)
    axis.setTextPen(colours.foreground)  # also the label's colour


def set_axis_label(axis: pg.AxisItem, text: str, units: str = "") -> None:
    """Label ``axis`` "text (units)" with the units exactly as given: SI-prefix auto-scaling off."""
    if axis.autoSIPrefix:
        axis.showLabel(False)  # with the label hidden, switching scaling off leaves the scale at 1
        axis.enableAutoSIPrefix(False)
    style = {"font-size": LABEL_SIZE, "color": axis.textPen().color().name()}
    axis.setLabel(text, units=units or None, unitPrefix="", **style)


def apply_palette(plot: pg.PlotWidget, palette: QPalette | None = None) -> PlotColours:
    """Colour ``plot`` (background, axes, title, its colour bars) from ``palette``."""
    colours = plot_colours(palette)
    plot.setBackground(colours.background)
    item = plot.getPlotItem()
    for side in SIDES:
        _style_axis(item.getAxis(side), colours)
    title = getattr(plot, "title_text", None)
    if title:
        item.setTitle(title, color=colours.foreground.name(), size=TITLE_SIZE)
        item.layout.setRowFixedHeight(0, TITLE_HEIGHT)
        item.titleLabel.setMaximumHeight(TITLE_HEIGHT)
        item.titleLabel.setMinimumWidth(0)  # a title never makes the plot wider than its widget (see Plot)
    else:  # no title: a little room so the top tick label is not cut in half
        item.layout.setRowFixedHeight(0, NO_TITLE_PAD)
    for bar in getattr(plot, "colour_bars", []):
        for side in SIDES:
            _style_axis(bar.getAxis(side), colours)
    return colours


class Plot(pg.PlotWidget):
    """A ``PlotWidget`` styled by :func:`make_plot` that follows later palette changes."""

    def __init__(self, title: str | None = None) -> None:
        self._ready = False  # palette events arrive during the base class's construction
        super().__init__()
        self.title_text = title
        self.colour_bars: list[pg.ColorBarItem] = []
        self.setMinimumSize(*MIN_PLOT_SIZE)
        item = self.getPlotItem()
        for side in SIDES:
            axis = item.getAxis(side)
            axis.showLabel(False)
            axis.enableAutoSIPrefix(False)
        item.hideButtons()  # the auto-range "A" button covers data at small sizes; right-click still has it
        if title:  # centred over the whole plot, not only over the data area: more room in narrow plots
            item.layout.removeItem(item.titleLabel)
            item.layout.addItem(item.titleLabel, 0, 0, 1, 6)
        apply_palette(self)
        self._ready = True

    def sizeHint(self) -> QSize:
        return QSize(320, 220)

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if self._ready and event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            apply_palette(self)


def make_plot(
    title: str | None, x_label: str, x_units: str = "", y_label: str = "", y_units: str = "", tooltip: str | None = None
) -> Plot:
    """A plot in the application's style: short ``title`` (None: no title row), both axes labelled.

    Keep ``title`` short (about 30 characters fit a 300 px plot); explanations go in ``tooltip``.
    """
    plot = Plot(title)
    item = plot.getPlotItem()
    set_axis_label(item.getAxis("bottom"), x_label, x_units)
    set_axis_label(item.getAxis("left"), y_label, y_units)
    if tooltip:
        plot.setToolTip(tooltip)
    return plot


def colour_bar(
    plot: Plot,
    image: pg.ImageItem,
    label: str,
    units: str = "",
    colormap: str = "viridis",
    levels: tuple[float, float] = (0.0, 1.0),
    width: int = 12,
) -> pg.ColorBarItem:
    """A vertical colour bar at the right of ``plot`` for ``image``, its axis labelled "label (units)",
    showing ``levels`` until the first :func:`set_levels`.

    The bar does not follow ``image`` by itself: update both with :func:`set_levels` (cheap, call it on
    every redraw).
    """
    bar = pg.ColorBarItem(values=levels, width=width, colorMap=colormap, interactive=False, colorMapMenu=False)
    bar.setImageItem(image, insert_in=plot.getPlotItem())
    for side in SIDES:
        bar.getAxis(side).enableAutoSIPrefix(False)
    bar.axis.setWidth(None)  # room for long tick values such as -100
    set_axis_label(bar.axis, label, units)
    plot.colour_bars.append(bar)
    apply_palette(plot)
    return bar


def reserve_colour_bar_space(plot: Plot, bar: pg.ColorBarItem) -> pg.GraphicsWidget:
    """Leave an empty column at the right of ``plot`` as wide as ``bar`` (in another plot), so that plots
    stacked in a column with linked x axes have data areas of the same width. Give their left axes one
    width too (``axis.setWidth``)."""
    item = plot.getPlotItem()
    spacer = pg.GraphicsWidget()
    item.layout.addItem(spacer, 2, 5)
    item.layout.setColumnFixedWidth(4, 5)  # the gap colour_bar leaves between the axis and the bar

    def follow() -> None:
        spacer.setFixedWidth(bar.geometry().width())

    bar.geometryChanged.connect(follow)
    follow()
    return spacer


def set_levels(bar: pg.ColorBarItem, image: pg.ImageItem, low: float, high: float) -> tuple[float, float]:
    """Show ``image`` between ``low`` and ``high`` and its bar with the same range (a flat range is widened)."""
    low, high = float(low), float(high)
    if not high > low:
        high = low + max(abs(low) * 1e-3, 1e-9)
    image.setLevels((low, high))
    bar.setLevels((low, high), update_items=False)
    return low, high


class _Swatch(QWidget):
    def __init__(self, colour: str) -> None:
        super().__init__()
        self.colour = QColor(colour)
        self.setFixedSize(11, 11)

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.colour)
        painter.setPen(self.palette().color(QPalette.ColorRole.WindowText))
        painter.drawRect(self.rect().adjusted(0, 0, -1, -1))
        painter.end()


class ZoneLegend(QWidget):
    """A row "zones: ■ clean ■ backdoor …": a swatch and a name per entry, a tooltip explaining each;
    with ``per_row``, rows of that many entries (a legend of many series in a narrow dock)."""

    def __init__(
        self,
        colours: dict[str, str],
        names: dict[str, str] | None = None,
        tooltips: dict[str, str] | None = None,
        title: str = "zones:",
        per_row: int | None = None,
    ) -> None:
        super().__init__()
        self.setObjectName("zone_legend")
        self.colours = dict(colours)
        self.swatches: dict[str, _Swatch] = {}
        self.labels: dict[str, QLabel] = {}
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(2)
        layout = None
        if title:
            layout = QHBoxLayout()
            layout.setSpacing(4)
            layout.addWidget(QLabel(title))
            outer.addLayout(layout)
        for n, (key, colour) in enumerate(self.colours.items()):
            if layout is None or (per_row and n and n % per_row == 0):
                if layout is not None and per_row:
                    layout.addStretch(1)
                layout = QHBoxLayout()
                layout.setSpacing(4)
                outer.addLayout(layout)
            swatch, label = _Swatch(colour), QLabel((names or {}).get(key, key))
            label.setObjectName(f"legend_{key}")
            tip = (tooltips or {}).get(key)
            for w in (swatch, label):
                w.setToolTip(tip or "")
            layout.addSpacing(6)
            layout.addWidget(swatch, 0, Qt.AlignmentFlag.AlignVCenter)
            layout.addWidget(label)
            self.swatches[key], self.labels[key] = swatch, label
        if layout is not None:
            layout.addStretch(1)

    def entries(self) -> dict[str, tuple[str, str]]:
        """key -> (shown name, swatch colour '#rrggbb') of the entries not hidden."""
        return {
            k: (self.labels[k].text(), self.swatches[k].colour.name())
            for k in self.colours
            if not self.labels[k].isHidden()
        }

    def set_shown(self, key: str, shown: bool) -> None:
        """Show or hide one entry (a series the plot does not draw now)."""
        self.swatches[key].setHidden(not shown)
        self.labels[key].setHidden(not shown)


def zone_legend() -> ZoneLegend:
    """The zone colours of bars and points, and the colour used while zones are not known yet."""
    return ZoneLegend({**ZONE_COLOURS, "unknown": NO_ZONE}, ZONE_NAMES, ZONE_HELP)
