"""Render the application's main views to docs/screenshots/*.png (offscreen Qt; used in the README).

    QT_QPA_PLATFORM=offscreen python scripts/screenshots.py [--out docs/screenshots]

Uses the demo workspace (built first if it is not cached). At 1280x800 (the smallest screen the
window must fit) and at 1920x1080 it grabs: the welcome page, the workspace with a clip that the
backdoor flips, the Neurons tab while the default (Recommended) defense runs, and the window after
the run. The numbers of that run go to ``captions.json`` beside the pictures, so the README's
captions can be checked against what the code produces now.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
SIZES = ((1280, 800), (1920, 1080))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = p.parse_args()
    from PySide6.QtWidgets import QApplication

    from core.demo import ensure_demo
    from gnft_gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    demo = ensure_demo()
    window = MainWindow()
    window.resize(*SIZES[0])
    window.show()
    app.processEvents()
    window.grab().save(str(out / "welcome_1280x800.png"))
    window.open_model(demo.model)
    window.open_data(demo.data)
    wait_until(app, lambda: window.data is not None and not window.tasks, 300)
    data, target = window.data, window.attack.params.target
    for row in range(window.clips.table.rowCount()):
        index = int(window.clips.table.item(row, 0).data(0x0100))  # Qt.UserRole: the clip's index
        label = data.classes[int(data.labels[index])]
        if (
            index in data.splits["test"].tolist()
            and int(data.labels[index]) != target
            and window.clips.table.item(row, 4).text() == label
        ):
            window.clips.select(row)
            if window.audio_view.sides["triggered"].top3.text().startswith(data.classes[target]):
                break
    for size in SIZES:
        window.resize(*size)
        app.processEvents()
        window.grab().save(str(out / f"main_window_{size[0]}x{size[1]}.png"))
    dialog = window.open_recorder()
    app.processEvents()
    dialog.grab().save(str(out / "recorder.png"))
    dialog.close()

    panel = window.defense_panel
    window.resize(*SIZES[0])
    window.show_tab(window.neurons)
    panel.run_button.click()  # the Recommended preset, as a new user would run it
    task = window.defense_task
    wait_until(
        app,
        lambda: (
            len(window.neurons.steps) >= 30
            and len(window.neurons.snapshots.get(window.neurons.layer.currentText(), [])) >= 3
        ),
    )
    window.neurons.select_neuron(int(window.neurons.latest().blc.argmax()))
    app.processEvents()
    window.grab().save(str(out / "live_run_1280x800.png"))
    wait_until(app, lambda: panel.state == "finished")
    window.neurons.redraw()
    outcome = window.session.pending
    for size in SIZES:
        window.resize(*size)
        app.processEvents()
        window.grab().save(str(out / f"after_run_{size[0]}x{size[1]}.png"))
    shown = ("clean_accuracy", "attack_success_rate", "robust_accuracy")  # in percent, as the window shows them
    caption = {
        "preset": outcome.preset,
        "defense": outcome.defense,
        "seconds": round(outcome.seconds, 1),
        "before_percent": {k: round(100 * outcome.before[k], 1) for k in shown if k in outcome.before},
        "after_percent": {k: round(100 * outcome.after[k], 1) for k in shown if k in outcome.after},
        "demo": demo.info,
        "task_finished": task is not None,
    }
    (out / "captions.json").write_text(json.dumps(caption, indent=1) + "\n")
    window.session.unsaved_repair = ""
    window.close()
    print(
        f"wrote the screenshots and captions.json to {out}: {caption['before_percent']} -> {caption['after_percent']}"
    )
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
