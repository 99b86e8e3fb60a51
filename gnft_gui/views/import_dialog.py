"""Import a plain PyTorch ``.pt`` state dict: the user names its architecture, classes and front end.

A ``.pt`` file holds weights only, so the dialog asks for what a ``.safetensors`` checkpoint
records itself. Loading is ``core.checkpoint.import_pt`` (tensors and plain containers only: no code
from the file runs). A mismatch is shown in the dialog, which stays open with the values typed so far.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from core.checkpoint import import_pt
from core.errors import GnftError
from core.features import FrontEndConfig
from core.models import describe, list_models

from .forms import DataclassForm, error_label

__all__ = ["ImportDialog", "parse_arch_args"]


def parse_arch_args(text: str) -> dict[str, Any]:
    """``"width=32, dropout=0.1"`` -> ``{"width": 32, "dropout": 0.1}`` (Python literals, else strings)."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"architecture arguments: {part!r} is not key=value")
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


class ImportDialog(QDialog):
    """Emits ``imported(model, metadata)`` once the file loaded into the named architecture."""

    imported = Signal(object, object)

    def __init__(self, path: str | Path, classes: Sequence[str] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = Path(path)
        self.setWindowTitle(f"Import {self.path.name}")
        self.setObjectName("import_dialog")
        note = QLabel(
            f"{self.path.name} holds weights only. Say which architecture, classes and front end it "
            "was trained with. Only tensors and plain containers are read from it: no code from the file runs."
        )
        note.setWordWrap(True)
        self.architecture = QComboBox()
        self.architecture.setObjectName("import_architecture")
        self.architecture.addItems(list_models())
        self.arch_help = QLabel("")
        self.arch_help.setWordWrap(True)
        self.arch_args = QLineEdit("")
        self.arch_args.setObjectName("import_arch_args")
        self.arch_args.setPlaceholderText("key=value, … (empty: the defaults)")
        self.classes = QLineEdit(", ".join(classes))
        self.classes.setObjectName("import_classes")
        self.classes.setPlaceholderText("comma list in the model's output order, e.g. yes, no, up, down")
        self.front_end = DataclassForm("frontend_")
        self.front_end.build(FrontEndConfig)
        group = QGroupBox("front end (features the model was trained on)")
        QVBoxLayout(group).addWidget(self.front_end)
        self.error = error_label("import_error")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.try_import)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("architecture", self.architecture)
        form.addRow("", self.arch_help)
        form.addRow("architecture arguments", self.arch_args)
        form.addRow("classes", self.classes)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addLayout(form)
        layout.addWidget(group)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self.architecture.currentTextChanged.connect(lambda name: self.arch_help.setText(describe(name)))
        self.arch_help.setText(describe(self.architecture.currentText()))

    def try_import(self) -> bool:
        """Load the file with the typed settings; on success emit ``imported`` and close."""
        try:
            classes = [c.strip() for c in self.classes.text().split(",") if c.strip()]
            if len(classes) < 2:
                raise ValueError("classes: give at least two class names, comma separated, in output order")
            if len(set(classes)) != len(classes):
                raise ValueError("classes: a name appears twice")
            front_end = FrontEndConfig(**self.front_end.typed()).to_dict()
            model, meta = import_pt(
                self.path,
                self.architecture.currentText(),
                classes,
                front_end,
                arch_args=parse_arch_args(self.arch_args.text()),
            )
        except (GnftError, ValueError, TypeError, OSError) as err:
            self.error.setText(str(err))
            return False
        self.error.setText("")
        self.imported.emit(model, meta)
        self.accept()
        return True
