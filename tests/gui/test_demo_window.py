"""gnft-gui --demo: a cached demo opens as a workspace; a build can be cancelled without an error."""

from __future__ import annotations

from core.demo import cached_demo, demo_dir, ensure_demo
from gnft_gui.main_window import MainWindow


def test_cached_demo_opens_model_and_data(qtbot):
    ensure_demo(clips_per_word=6, epochs=1)  # into $GNFT_DATA_DIR (the test's folder)
    window = MainWindow(demo=True)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.data is not None and window.model is not None, timeout=60000)
    assert window.model_path == cached_demo(demo_dir()).model
    assert window.attack is not None and window.attack.name == "badnets"
    assert window.clips.table.rowCount() == len(window.data) == 60


def test_demo_build_runs_in_a_worker_and_cancel_leaves_no_demo(qtbot):
    window = MainWindow()
    qtbot.addWidget(window)
    task = window.open_demo()
    assert task is not None and window.cancel_button.isVisibleTo(window)
    # a second click while it builds joins the same build (two builds would write one folder)
    assert window.open_demo() is task and not window.welcome_buttons["demo"].isEnabled()
    with qtbot.waitSignal(task.observer.stepped, timeout=120000):
        pass  # the corpus is written and training has started
    with qtbot.waitSignal(task.cancelled, timeout=60000):
        window.cancel_button.click()
    assert window.last_error is None and window.model is None
    assert cached_demo(demo_dir()) is None and "cancelled" in window.status_label.text()
    assert not window.cancel_button.isVisibleTo(window)
    assert window.demo_task is None and window.welcome_buttons["demo"].isEnabled()
