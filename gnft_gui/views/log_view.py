"""A read-only log panel fed by the ``logging`` tree through a queued Qt signal."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QPlainTextEdit

__all__ = ["LogPanel", "QtLogHandler"]


class _Bridge(QObject):
    record = Signal(str)


class QtLogHandler(logging.Handler):
    """Formats each record and emits it; the connection to the panel is queued, so any thread may log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.bridge = _Bridge()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.bridge.record.emit(self.format(record))
        except RuntimeError:  # the panel is gone (application closing)
            pass


class LogPanel(QPlainTextEdit):
    """Shows the last 5000 log lines."""

    def __init__(self) -> None:
        super().__init__()
        self.setReadOnly(True)
        self.setMaximumBlockCount(5000)
        self.setObjectName("log_panel")
        self.handler = QtLogHandler()
        self.handler.bridge.record.connect(self.appendPlainText)
