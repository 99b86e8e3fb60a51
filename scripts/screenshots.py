"""Render the application's main views to docs/screenshots/*.png (offscreen Qt; used in the README).

    QT_QPA_PLATFORM=offscreen python scripts/screenshots.py [--out docs/screenshots]

Uses the demo workspace (built first if it is not cached), selects a clip that the backdoor
flips, and grabs the main window and the trigger recorder. Then runs GN-FT from the Defense
panel (20 % clean share, lr 0.05, 30 epochs: the small demo model needs a strong step to lose
its backdoor) and grabs the Neurons view mid-run and the window after the run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = p.parse_args()
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from core.demo import ensure_demo
    from gnft_gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    demo = ensure_demo()
    window = MainWindow()
    window.resize(1400, 860)
    window.show()
    loop = QEventLoop()
    window.predictions_ready.connect(loop.quit)
    window.open_model(demo.model)
    window.open_data(demo.data)
    QTimer.singleShot(120000, loop.quit)
    loop.exec()
    data, target = window.data, window.attack.params.target
    for index in data.splits["test"].tolist():
        if int(data.labels[index]) != target and window.clips.table.item(index, 4).text() == \
                data.classes[int(data.labels[index])]:
            window.clips.select(index)
            if window.audio_view.sides["triggered"].top3.text().startswith(data.classes[target]):
                break
    app.processEvents()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(out / "main_window.png"))
    dialog = window.open_recorder()
    app.processEvents()
    dialog.grab().save(str(out / "recorder.png"))
    dialog.close()

    panel = window.defense_panel
    for name, value in (("clean_ratio", "0.2"), ("lr", "0.05"), ("epochs", "30"), ("batch_size", "32"),
                        ("eval_every", "5")):
        panel.fields[name].setText(value)
    window.resize(1800, 1150)  # room for the live plots
    window.tabs.setCurrentWidget(window.neurons)
    panel.run_button.click()
    task = window.defense_task
    wait_until(app, lambda: len(window.neurons.steps) >= 45 and len(window.neurons.snapshots.get(
        window.neurons.layer.currentText(), [])) >= 3)
    window.neurons.select_neuron(int(window.neurons.latest().blc.argmax()))
    app.processEvents()
    window.grab().save(str(out / "live_run.png"))
    done = QEventLoop()
    task.finished.connect(lambda _r: done.quit())
    done.exec()
    window.neurons.redraw()
    app.processEvents()
    window.grab().save(str(out / "after_run.png"))
    window.close()
    print(f"wrote main_window, recorder, live_run and after_run PNGs to {out}")
    return 0


def wait_until(app, condition, timeout_s: float = 600) -> None:
    """Run the event loop until ``condition()`` holds (checked every 50 ms)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop, timer = QEventLoop(), QTimer()
    timer.timeout.connect(lambda: loop.quit() if condition() else None)
    timer.start(50)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    timer.stop()


if __name__ == "__main__":
    sys.exit(main())
