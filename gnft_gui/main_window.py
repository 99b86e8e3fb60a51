"""The main window. For now a placeholder that says what is coming; the engine is usable headless."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMainWindow

from core import __version__

__all__ = ["MainWindow", "PLACEHOLDER_TEXT"]

PLACEHOLDER_TEXT = (
    "GN-FT Workbench {version}\n\n"
    "The desktop workspace is coming: loading models and data, listening to clean and\n"
    "triggered clips, and watching GN-FT repair a model live.\n\n"
    "Today the engine runs headless: python -m core.train, python -m core.data.synth."
)


class MainWindow(QMainWindow):
    """Top-level window; remembers what it was asked to open."""

    def __init__(self, model_path: str | None = None, data_path: str | None = None, demo: bool = False) -> None:
        super().__init__()
        self.requested = {"model": model_path, "data": data_path, "demo": demo}
        self.setWindowTitle("GN-FT Workbench")
        label = QLabel(PLACEHOLDER_TEXT.format(version=__version__))
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setObjectName("placeholder")
        self.setCentralWidget(label)
        self.resize(900, 600)
