"""The window on a small screen: minimum size, docks, remembered geometry; the way out with a repair."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import QRect
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMessageBox

from core.checkpoint import load_checkpoint
from gnft_gui.main_window import SMALL_SCREEN, MainWindow, fit_to_screen, settings


def fits_small_screen(window: MainWindow) -> bool:
    hint, minimum = window.minimumSizeHint(), window.minimumSize()
    return all(v.width() <= SMALL_SCREEN[0] and v.height() <= SMALL_SCREEN[1] for v in (hint, minimum))


def test_a_new_window_fits_1280x800_and_says_how_to_begin(qtbot):
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    assert fits_small_screen(window), window.minimumSizeHint()
    assert window.central.currentWidget().objectName() == "welcome"
    assert {b.text() for b in window.welcome_buttons.values()} == {"Open the demo", "Open a model…", "Open a dataset…"}


def test_the_loaded_window_fits_1280x800_before_and_during_a_run(qtbot, window):
    window.resize(*SMALL_SCREEN)
    window.show()
    for tab in (window.audio_view, window.neurons):
        window.show_tab(tab)
        assert fits_small_screen(window), (tab.objectName(), window.minimumSizeHint())
    panel = window.defense_panel
    panel.form.show_advanced(True)  # every option unfolded: the dock scrolls, the window does not grow
    scroll = window.docks["Defense"].widget()
    qtbot.waitUntil(lambda: panel.form.advanced_box.isVisible())
    # and no option is cut off at the right: the widest label and its field fit the dock's width
    assert panel.minimumSizeHint().width() <= scroll.viewport().width(), panel.minimumSizeHint()
    panel.fields["epochs"].setText("500")
    panel.run_button.click()
    with qtbot.waitSignal(window.defense_task.observer.stepped, timeout=60000):
        pass
    assert fits_small_screen(window), window.minimumSizeHint()
    assert window.size().width() <= SMALL_SCREEN[0] and window.size().height() <= SMALL_SCREEN[1]
    with qtbot.waitSignal(window.defense_task.finished, timeout=60000):
        panel.cancel_button.click()
    # every before/after row is visible: the table is as tall as its rows
    table = panel.result
    assert table.height() >= table.horizontalHeader().height() + table.verticalHeader().length()


def test_the_view_menu_brings_back_every_dock(qtbot, window):
    window.show()
    actions = {a.text(): a for a in window.view_menu.actions()}
    docks = window.findChildren(QDockWidget)
    assert docks and all(d.windowTitle() in actions for d in docks)
    log = window.docks["Log"]
    actions["Log"].trigger()  # close it as its title-bar button would
    assert not log.isVisible()
    actions["Log"].trigger()
    assert log.isVisible()
    window.docks["Clips"].close()
    window.reset_layout()
    assert all(d.isVisible() for d in docks)


def test_fit_to_screen_shrinks_and_moves_into_the_screen():
    screen = QRect(0, 0, 1280, 800)
    assert fit_to_screen(QRect(100, 50, 800, 600), screen) == QRect(100, 50, 800, 600)
    assert fit_to_screen(QRect(-50, -20, 2000, 1500), screen) == screen
    assert fit_to_screen(QRect(1500, 900, 400, 300), screen) == QRect(880, 500, 400, 300)
    second = QRect(1920, 0, 1280, 1024)  # a screen to the right of another
    assert fit_to_screen(QRect(0, 0, 800, 600), second) == QRect(1920, 0, 800, 600)


def test_a_remembered_geometry_larger_than_the_screen_is_clamped(qtbot):
    big = MainWindow()
    qtbot.addWidget(big)
    big.setMinimumSize(0, 0)
    big.setGeometry(3000, 2000, 4000, 3000)  # remembered from a bigger screen, placed off this one
    big.close()
    assert settings().value("geometry") is not None
    window = MainWindow()
    qtbot.addWidget(window)
    available = window.screen().availableGeometry()
    frame = window.frameGeometry()
    assert available.contains(frame), (frame, available)


def test_accept_then_quit_asks_to_export_and_export_writes_human_numbers(
    qtbot, window, tmp_path, monkeypatch, unanswered_questions
):
    panel = window.defense_panel
    for name, value in (("clean_ratio", "100"), ("epochs", "2"), ("batch_size", "32"), ("eval_every", "1")):
        panel.fields[name].setText(value)
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.state == "finished", timeout=120000)
    with qtbot.waitSignal(window.predictions_ready, timeout=60000):
        panel.accept_button.click()
    assert window.unsaved_repair and "not exported" in window.status_label.text()
    # opening another model first asks; Cancel keeps everything
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Cancel))
    model = window.model
    assert window.open_model(window.model_path) is False and window.model is model
    # quitting asks; Save goes to the export dialog, which proposes <model>_repaired in the home folder
    proposed = []
    target = tmp_path / "exported" / "mine.safetensors"
    target.parent.mkdir()

    def save_dialog(_parent, _title, suggested, _filter):
        proposed.append(suggested)
        return str(target), ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(save_dialog))
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Save))
    assert window.close()
    assert proposed[0].endswith(f"{window.model_path.stem}_repaired.safetensors")
    assert window.unsaved_repair == "" and window.last_notice.isVisible() and str(target) in window.last_notice.text()
    _model, meta = load_checkpoint(target)
    entry = meta["provenance"]["defenses"][-1]
    assert entry["preset"]["name"] == "custom" and entry["preset"]["from"] == "recommended"
    report = json.loads(target.with_suffix(".json").read_text())
    assert report["defenses"][-1]["after"] == entry["after"]
    md = target.with_suffix(".md").read_text()
    ca = f"{100 * entry['after']['clean_accuracy']:.1f} %"
    assert ca in md and "0.6499999" not in md and "GN-FT" in md
    # the next export proposes the folder used last
    assert window.suggested_export_path().parent == target.parent


@pytest.mark.parametrize("answer", ["Discard", "Cancel"])
def test_quitting_with_an_unexported_repair(qtbot, window, monkeypatch, answer):
    window.session.unsaved_repair = "CA 90.0 %, ASR 3.0 %"
    monkeypatch.setattr(
        QMessageBox, "question", staticmethod(lambda *a, **k: getattr(QMessageBox.StandardButton, answer))
    )
    window.show()
    closed = window.close()
    assert closed == (answer == "Discard")
    assert window.isVisible() == (answer == "Cancel")
    window.session.unsaved_repair = ""
