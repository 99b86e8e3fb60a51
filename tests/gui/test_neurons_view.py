"""The Neurons view without a run: analysis in the worker, exact CLC/BLC in the plane, clicking a neuron."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
import torch
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QApplication

from core.analysis.zones import backdoor_set, exact_loss_changes
from core.events import NeuronStats, StepInfo
from gnft_gui.main_window import MainWindow
from gnft_gui.views.neurons import ZONE_COLOURS, NeuronView
from tests.gui.conftest import open_workspace


def test_analyse_shows_exact_zones_of_the_loaded_model_and_a_click_selects_a_neuron(qtbot, workspace, monkeypatch):
    window = MainWindow()
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    open_workspace(qtbot, window, workspace, monkeypatch)
    view = window.neurons
    layer = view.layer.currentText()
    state = {k: v.clone() for k, v in window.model.state_dict().items()}
    with qtbot.waitSignal(window.analysis_done, timeout=120000) as done:
        view.analyse_button.click()
    assert window.tabs.currentWidget() is view and window.analysis_task is None
    entry = done.args[0]["layers"][layer]
    # the plane shows the exact values of the loaded model, equal to a direct computation
    data, attack = window.data, window.attack
    idx = data.splits["test"]
    waves, labels = data.waves[idx], data.labels[idx]
    bd = backdoor_set(waves, labels, attack.apply_test(waves, data.sample_rate), attack.params.target)
    direct = exact_loss_changes(window.model, layer, *bd)
    x, y = view.scatter.getData()
    assert np.allclose(y, direct.numpy(), atol=1e-5) and np.allclose(x, entry["clc"])
    snap = view.latest()
    assert snap.label == "analysis (exact)" and snap.counts() == entry["counts"]
    bars = view.norm_bars.opts
    assert np.allclose(bars["height"], entry["grad_norm"])
    assert [b.color().name() for b in map(_brush, bars["brushes"])] == [ZONE_COLOURS[z] for z in snap.zones]
    assert all(torch.equal(v, window.model.state_dict()[k]) for k, v in state.items())  # analysed a copy

    # a real mouse click on a point of the plane selects that neuron
    plot = view.zone_plot
    qtbot.waitUntil(lambda: plot.isVisible() and plot.width() > 100)
    # zoom onto the most isolated neuron (as a user would into a crowded plane) so only it is in view
    points = np.stack([snap.clc, snap.blc], axis=1)
    scale = points.std(axis=0) + 1e-12
    gaps = np.linalg.norm((points[:, None] - points[None]) / scale, axis=2) + np.eye(len(points)) * 1e9
    k = int(np.argmax(gaps.min(axis=1)))
    half = gaps[k].min() / 2 * scale
    vb = plot.getPlotItem().vb
    vb.setRange(
        xRange=(points[k, 0] - half[0], points[k, 0] + half[0]),
        yRange=(points[k, 1] - half[1], points[k, 1] + half[1]),
        padding=0,
    )
    QApplication.processEvents()
    scene_pos = vb.mapViewToScene(QPointF(float(points[k, 0]), float(points[k, 1])))
    qtbot.mouseClick(plot.viewport(), Qt.MouseButton.LeftButton, pos=plot.mapFromScene(scene_pos))
    assert view.selected == k and view.neuron.value() == k
    assert f"{layer} neuron {k}" in view.info.text() and f"BLC {snap.blc[k]:+.4f}" in view.info.text()
    tx, ty = view.trail.getData()
    assert list(tx) == [snap.clc[k]] and list(ty) == [snap.blc[k]]


def _brush(b):
    import pyqtgraph as pg

    return pg.mkBrush(b)


def test_analyse_all_layers_reports_progress_per_layer(qtbot, window):
    view = window.neurons
    view.all_layers.setChecked(True)
    with qtbot.waitSignal(window.analysis_done, timeout=300000) as done:
        view.analyse_button.click()
    layers = [view.layer.itemText(i) for i in range(view.layer.count())]
    assert list(done.args[0]["layers"]) == layers
    assert window.progress.maximum() == len(layers) and window.progress.value() == len(layers)
    assert all(view.latest(name) is not None for name in layers)


def conv_fc_view(qtbot) -> NeuronView:
    """A view of two layers, "conv" shown."""
    view = NeuronView()
    qtbot.addWidget(view)
    view.set_layers(["conv", "fc"])
    view.layer.setCurrentText("conv")
    return view


def test_step_history_heat_map_and_neuron_history(qtbot):
    view = conv_fc_view(qtbot)
    rng = np.random.default_rng(0)
    rows = [rng.random(4).tolist() for _ in range(5)]
    for step, row in enumerate(rows, start=1):
        view.on_step(StepInfo("gnft", step, step, 5, 0.1, 0.001, {"conv": row, "fc": [1.0, 2.0]}))
    assert view.heat.image.shape == (4, 5)
    assert np.allclose(view.heat.image, np.asarray(rows, dtype=np.float32).T)
    view.select_neuron(2)
    hx, hy = view.history_curve.getData()
    assert list(hx) == [1, 2, 3, 4, 5] and np.allclose(hy, [r[2] for r in rows])
    # snapshots during the run are placed at the run's epoch; the neuron's path goes through them
    view.on_neurons(NeuronStats("conv", {"clc": [0.1, -0.2, 0.3, 0.0], "blc": [0.0, 0.5, 0.2, -0.1]}, label="a"))
    view.on_neurons(NeuronStats("conv", {"clc": [0.1, -0.2, -0.3, 0.0], "blc": [0.0, 0.5, 0.1, -0.1]}, label="b"))
    assert view.latest().epoch == 5 and view.latest().zones == ["clean", "backdoor", "backdoor", "redundant"]
    tx, ty = view.trail.getData()
    assert np.allclose(tx, [0.3, -0.3]) and np.allclose(ty, [0.2, 0.1])
    assert "b: CLC -0.3000, BLC +0.1000 (backdoor)" in view.info.text()
    assert view.counts.text() == "b: clean 1, backdoor 2, hybrid 0, redundant 1"
    view.layer.setCurrentText("fc")  # another layer: its own norms, no zones yet
    assert list(view.norm_bars.opts["height"]) == [1.0, 2.0] and view.scatter.getData()[0].size == 0
    assert "no CLC/BLC yet" in view.counts.text()


def test_bars_fill_the_x_range_and_the_heat_map_colour_bar_follows_the_steps(qtbot):
    view = conv_fc_view(qtbot)
    rng = np.random.default_rng(1)
    rows = []
    for step in range(1, 41):
        rows.append(rng.random(32) * 0.01)
        view.on_step(StepInfo("gnft", 1, step, 40, 0.1, 0.001, {"conv": rows[-1].tolist(), "fc": [1.0] * 7}))
    for layer, n in (("conv", 32), ("fc", 7)):
        view.layer.setCurrentText(layer)
        lo, hi = view.norm_plot.getPlotItem().vb.viewRange()[0]
        width = view.norm_bars.opts["width"]
        # every bar inside the range, with half a bar of margin at both ends
        assert lo == pytest.approx(-width / 2 - width / 2) and hi == pytest.approx(n - 1 + width / 2 + width / 2)
        assert len(view.norm_bars.opts["height"]) == n
    view.layer.setCurrentText("conv")
    history = np.asarray(rows).T
    assert np.allclose(view.heat.getLevels(), (history.min(), history.max()))
    assert np.allclose(view.heat_bar.levels(), view.heat.getLevels())
    assert np.allclose(view.heat_bar.axis.range, view.heat.getLevels())
    assert view.heat_bar.scene() is view.heat_plot.scene()
    # a new run starts its own colour range
    view.begin_run()
    view.on_step(StepInfo("gnft", 1, 1, 3, 0.1, 0.001, {"conv": [5.0] * 31 + [7.0]}))
    assert np.allclose(view.heat_bar.levels(), (5.0, 7.0)) and np.allclose(view.heat.getLevels(), (5.0, 7.0))
    # all zones known: the bars take the zone colours; the legend names each colour used
    view.on_neurons(NeuronStats("conv", {"clc": [0.1] * 16 + [-0.1] * 16, "blc": [-0.1] * 16 + [0.1] * 16}))
    used = {pg.mkBrush(b).color().name() for b in view.norm_bars.opts["brushes"]}
    legend = {colour: name for name, colour in view.legend.entries().values()}
    assert used == {ZONE_COLOURS["clean"], ZONE_COLOURS["backdoor"]}
    assert {legend[c] for c in used} == {"clean", "backdoor"}


def test_a_second_repair_pass_lengthens_the_step_axes_and_the_history_runs_on(qtbot):
    view = conv_fc_view(qtbot)
    for step in range(1, 4):  # pass 1: 3 steps
        view.on_step(StepInfo("gnft", step, step, 3, 0.1, 0.001, {"conv": [float(step)] * 4, "fc": [1.0, 2.0]}))
    assert view.history_plot.viewRange()[0] == pytest.approx([0, 4])
    view.on_step(StepInfo("scan mix", 0, 1, 10, 0.5))  # the scan of the repaired model: no norms, no axis change
    for step in range(4, 7):  # pass 2 counts on (rescan_passes): 6 steps in all
        view.on_step(StepInfo("gnft", step, step, 6, 0.1, 0.001, {"conv": [float(step)] * 4, "fc": [1.0]}))
    assert view.history_plot.viewRange()[0] == pytest.approx([0, 7])
    assert view.heat_plot.viewRange()[0] == pytest.approx([0, 7])
    view.select_neuron(1)
    hx, hy = view.history_curve.getData()
    assert list(hx) == [1, 2, 3, 4, 5, 6] and list(hy) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
