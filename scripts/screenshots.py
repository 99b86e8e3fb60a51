"""Render the application's main views to docs/screenshots/*.png (offscreen Qt; used in the README).

    QT_QPA_PLATFORM=offscreen python scripts/screenshots.py [--out docs/screenshots]

Uses the demo workspace (built first if it is not cached), selects a clip that the backdoor
flips, and grabs the main window and the trigger recorder.
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
    window.close()
    print(f"wrote {out / 'main_window.png'} and {out / 'recorder.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
