"""Plots readable at a glance: labelled axes with plain units, colour bars, a zone legend, the desktop's colours,
and views that still work in a small window."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QPoint, QRect, QRectF, QSize
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QWidget

from core.analysis.zones import ZONES
from core.events import NeuronStats, StepInfo
from gnft_gui.views.audio_view import DYNAMIC_RANGE_DB, AudioView, spectrogram_db
from gnft_gui.views.neurons import NeuronView
from gnft_gui.views.plots import NO_ZONE, ZONE_COLOURS, make_plot, plot_colours, zone_legend

SI_PREFIXES = ("mHz", "µ", "(x", "mdB", "kdB", "(m)", "(k)")  # what auto-scaling of units would show


def plots_of(widget) -> list[pg.PlotWidget]:
    return widget.findChildren(pg.PlotWidget)


def filled_views(qtbot):
    """A Neuron view after 100 steps of 32 neurons and a CLC/BLC snapshot; an Audio view with two clips."""
    neurons, audio = NeuronView(), AudioView()
    qtbot.addWidget(neurons)
    qtbot.addWidget(audio)
    return fill(neurons), fill(audio)


def fill(view):
    rng = np.random.default_rng(0)
    if isinstance(view, AudioView):
        t = np.arange(16000) / 16000
        wave = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.normal(size=t.size)).astype(np.float32)
        view.show_clip("clean", wave, 16000, [("up", 0.9)], "clean")
        view.show_clip("triggered", wave * 0.1, 16000, None, "triggered")
        return view
    neurons = view
    neurons.set_layers(["conv", "fc"])
    neurons.layer.setCurrentText("conv")
    for step in range(1, 101):
        neurons.on_step(StepInfo("gnft", step // 10, step, 100, 0.1, 1e-3, {"conv": (rng.random(32) * 1e-3).tolist()}))
    neurons.on_neurons(
        NeuronStats(
            "conv",
            {"clc": rng.normal(0, 0.01, 32).tolist(), "blc": rng.normal(0, 0.01, 32).tolist()},
            label="after (exact)",
        )
    )
    neurons.select_neuron(3)
    return neurons


def axis_units_are_plain(plot: pg.PlotWidget) -> None:
    for side in ("left", "bottom", "right", "top"):
        axis = plot.getAxis(side)
        assert axis.autoSIPrefixScale == 1.0 and axis.labelUnitPrefix == "", (plot.objectName(), side)
        assert not any(p in axis.labelString() for p in SI_PREFIXES), axis.labelString()


def test_every_plot_has_labelled_axes_and_no_si_prefix_empty_or_filled(qtbot):
    empty = [NeuronView(), AudioView("no device")]
    for view in empty:
        qtbot.addWidget(view)
        view.resize(800, 450)
        view.show()
    filled = filled_views(qtbot)
    for view in (*empty, *filled):
        plots = plots_of(view)
        assert len(plots) == 4
        for plot in plots:
            for side in ("left", "bottom"):
                axis = plot.getAxis(side)
                assert axis.label.isVisible() and axis.labelText.strip(), (plot.objectName(), side)
            axis_units_are_plain(plot)
    audio = filled[1]
    spec = audio.sides["clean"].spec_plot
    assert "frequency (kHz)" in spec.getAxis("left").labelString()
    assert "time (s)" in spec.getAxis("bottom").labelString()
    assert "level (dBFS)" in audio.sides["clean"].colour_bar.axis.labelString()
    assert "gradient norm" in filled[0].heat_bar.axis.labelString()
    # the image spans 0..8 kHz in the axis' own units (no hidden scaling of the tick values)
    assert spec.getAxis("left").range[1] == pytest.approx(8.0, abs=0.05)


def test_spectrogram_colour_bars_follow_their_images(qtbot):
    _, audio = filled_views(qtbot)
    for side in ("clean", "triggered"):
        widget = audio.sides[side]
        bar, image = widget.colour_bar, widget.image
        assert isinstance(bar, pg.ColorBarItem) and bar.scene() is widget.spec_plot.scene()
        peak = float(spectrogram_db(audio.waves[side]).max())
        assert np.allclose(image.getLevels(), (peak - DYNAMIC_RANGE_DB, peak))
        assert np.allclose(bar.levels(), image.getLevels())
        assert np.allclose(bar.axis.range, image.getLevels())  # the bar's tick values show those levels
    # the two clips differ by 20 dB: so do their colour bars
    clean, triggered = (audio.sides[s].colour_bar.levels()[1] for s in ("clean", "triggered"))
    assert clean - triggered == pytest.approx(20.0, abs=0.5)
    # a full-scale sine peaks near 0 dBFS
    assert float(spectrogram_db(np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)).max()) == pytest.approx(0, abs=1)


def test_zone_legend_lists_every_zone_and_the_unknown_colour(qtbot):
    legend = zone_legend()
    qtbot.addWidget(legend)
    legend.show()
    entries = legend.entries()
    assert list(entries) == [*ZONES, "unknown"]
    assert {k: c for k, (_, c) in entries.items()} == {**ZONE_COLOURS, "unknown": NO_ZONE}
    assert all(entries[z][0] == z for z in ZONES) and entries["unknown"][0]
    for key, swatch in legend.swatches.items():  # the swatch as painted is that colour
        image = swatch.grab().toImage()
        assert image.pixelColor(image.width() // 2, image.height() // 2).name() == entries[key][1]
        assert legend.labels[key].toolTip()
    # the Neuron view shows it outside its plots
    view = NeuronView()
    qtbot.addWidget(view)
    assert view.legend.entries() == entries and not any(
        view.legend is p or p.isAncestorOf(view.legend) for p in plots_of(view)
    )


def _contrast(a: QColor, b: QColor) -> float:
    def luminance(c: QColor) -> float:
        ch = [x / 255 for x in (c.red(), c.green(), c.blue())]
        ch = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in ch]
        return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _palette(window: str, base: str, text: str) -> QPalette:
    palette = QPalette()
    for role, colour in (
        (QPalette.ColorRole.Window, window),
        (QPalette.ColorRole.Base, base),
        (QPalette.ColorRole.Text, text),
        (QPalette.ColorRole.WindowText, text),
    ):
        palette.setColor(role, QColor(colour))
    return palette


@pytest.fixture
def restore_palette(qapp):
    original = QPalette(qapp.palette())
    yield qapp
    qapp.setPalette(original)


LIGHT = ("#efefef", "#ffffff", "#000000")
DARK = ("#2d2d2d", "#1e1e1e", "#e6e6e6")


@pytest.mark.parametrize("colours, dark", [(LIGHT, False), (DARK, True)])
def test_plots_take_the_palette_colours_and_data_colours_stay_visible(qtbot, restore_palette, colours, dark):
    app = restore_palette
    app.setPalette(_palette(*colours))
    plot = make_plot("t", "x", "s", "y", "")
    qtbot.addWidget(plot)
    plot.resize(200, 150)
    plot.show()
    image = plot.grab().toImage()
    corner = image.pixelColor(image.width() - 2, image.height() - 2)  # background, outside axes and data
    assert (corner.lightnessF() < 0.3) if dark else (corner.lightnessF() > 0.85)
    assert corner.name() == colours[1]
    text = plot.getAxis("left").textPen().color()
    assert text.name() == colours[2] and "color: " + colours[2] in plot.getAxis("left").labelString()
    background = plot_colours().background
    for colour in (*ZONE_COLOURS.values(), NO_ZONE):  # every data colour stands out from the background
        assert _contrast(QColor(colour), background) >= 2.5, colour
    # and the zone colours differ from each other
    colours_list = [QColor(c) for c in (*ZONE_COLOURS.values(), NO_ZONE)]
    for i, a in enumerate(colours_list):
        for b in colours_list[i + 1 :]:
            assert abs(a.red() - b.red()) + abs(a.green() - b.green()) + abs(a.blue() - b.blue()) > 90


def test_an_existing_plot_follows_a_palette_change(qtbot, restore_palette):
    app = restore_palette
    app.setPalette(_palette(*LIGHT))
    view = NeuronView()
    qtbot.addWidget(view)
    assert all(p.backgroundBrush().color().lightnessF() > 0.85 for p in plots_of(view))
    app.setPalette(_palette(*DARK))
    QApplication.processEvents()
    assert all(p.backgroundBrush().color().name() == DARK[1] for p in plots_of(view))
    assert view.heat_bar.axis.textPen().color().name() == DARK[2]
    assert view.trail.opts["pen"].color().name() == DARK[2]  # the selected neuron's path stays visible


@pytest.mark.parametrize("make", [NeuronView, AudioView])
def test_views_fit_a_small_central_area(qtbot, make):
    view = make()
    qtbot.addWidget(view)
    for _ in range(2):  # empty, then filled (longer texts)
        hint = view.minimumSizeHint()
        assert hint.width() <= 800 and hint.height() <= 450
        fill(view)
    view.show()
    qtbot.waitUntil(lambda: view.isVisible())
    for size in (QSize(800, 450), view.minimumSizeHint()):
        view.resize(size)
        for _ in range(3):  # the plots lay out their axes in posted events
            QApplication.processEvents()
        # no two parts of the view overlap
        parts = [w for w in view.findChildren(QWidget) if w.isVisible() and w.parent() is view]
        if isinstance(view, AudioView):
            parts = [
                w
                for side in view.sides.values()
                for w in side.findChildren(QWidget)
                if w.parent() is side and w.isVisible()
            ] + [view.notice]
            parts = [w for w in parts if w.isVisible()]
        rects = [QRect(w.mapTo(view, QPoint(0, 0)), w.size()) for w in parts]
        for i, a in enumerate(rects):
            assert view.rect().contains(a), (size, parts[i].objectName())
            for j, b in enumerate(rects[i + 1 :], start=i + 1):
                assert not a.intersects(b), (size, parts[i].objectName(), parts[j].objectName())
        for plot in plots_of(view):
            assert plot.isVisible() and plot.height() >= 100 and plot.width() >= 150, plot.objectName()
            item = plot.getPlotItem()
            # nothing of the plot lies outside its widget; titles and axis labels fit (not cut)
            assert item.geometry().width() <= plot.width() + 0.5, (size, plot.objectName())
            assert item.geometry().height() <= plot.height() + 0.5, (size, plot.objectName())
            if item.titleLabel.isVisible():
                assert item.titleLabel.item.boundingRect().width() <= plot.width() - 10, plot.objectName()
            # axis labels (drawn centred on their axis, they may reach into the empty corners) lie inside the widget
            inside = QRectF(0, 0, plot.width(), plot.height()).adjusted(-0.5, -0.5, 0.5, 0.5)
            labels = [
                plot.getAxis("left").label,
                plot.getAxis("bottom").label,
                *(b.axis.label for b in plot.colour_bars),
            ]
            for label in labels:
                m = label.document().documentMargin()  # blank space around the text
                rect = label.mapRectToScene(label.boundingRect()).adjusted(m, m, -m, -m)
                assert inside.contains(rect), (size, plot.objectName(), label.toPlainText(), rect)
            for bar in plot.colour_bars:
                assert inside.contains(bar.mapRectToScene(bar.boundingRect())), (size, plot.objectName())
