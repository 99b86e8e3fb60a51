"""The ``gnft-gui`` entry point: command line, QApplication, main window."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gnft-gui", description="GN-FT Workbench: find and remove backdoors "
                                "from speech-command classifiers.")
    p.add_argument("--model", help="checkpoint to open (.safetensors)")
    p.add_argument("--data", help="dataset folder to open")
    p.add_argument("--demo", action="store_true", help="open the demo workspace")
    p.add_argument("--self-test", action="store_true",
                   help="start, show the main window (and load what --demo/--data ask for), then exit 0; "
                        "a smoke test of an installation")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Start the application; returns the Qt event loop's exit code."""
    args = build_parser().parse_args(argv)
    from PySide6.QtWidgets import QApplication

    from gnft_gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("GN-FT Workbench")
    app.setOrganizationName("GN-FT Workbench")
    window = MainWindow(model_path=args.model, data_path=args.data, demo=args.demo)
    window.show()
    sys.excepthook = window.unexpected_error  # anything uncaught: logged, and a dialog naming the log file
    app.aboutToQuit.connect(window.shutdown)
    if not args.self_test:
        window.warm_up()
    if args.self_test:
        from PySide6.QtCore import QTimer

        if args.demo or args.data:  # wait for the workspace to be loaded and predicted, or for an error
            window.predictions_ready.connect(lambda: app.exit(0 if window.isVisible() else 1))
            window.error_shown.connect(lambda _message: app.exit(1))
            QTimer.singleShot(600_000, lambda: app.exit(1))
        else:
            QTimer.singleShot(0, lambda: app.exit(0 if window.isVisible() else 1))
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
