"""A form generated from a dataclass: one row per field, a combo box for Literal and bool fields,
an optional tooltip per field.

Used for attack parameters, defense configs and the front-end settings of a ``.pt`` import, so
every editable engine dataclass looks and parses the same way.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFormLayout, QLabel, QLineEdit, QWidget

from core.runtime import parse_bool

__all__ = ["DataclassForm", "error_label"]


class DataclassForm(QWidget):
    """Rows for the fields of a dataclass; ``edited`` fires when a value is committed."""

    edited = Signal()

    def __init__(self, prefix: str, hidden: typing.Collection[str] = (),
                 tips: typing.Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.prefix = prefix
        self.hidden = set(hidden)
        self.tips = dict(tips or {})
        self.layout_ = QFormLayout(self)
        self.fields: dict[str, QLineEdit | QComboBox] = {}
        self.defaults: Any = None

    def build(self, cls: type, values: Any = None) -> None:
        """Replace the rows with ``cls``'s fields, showing ``values`` (an instance) or the defaults."""
        while self.layout_.rowCount():
            self.layout_.removeRow(0)
        self.fields.clear()
        self.defaults = cls()
        shown = values if values is not None else self.defaults
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in self.hidden:
                continue
            value = getattr(shown, f.name)
            choices = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is typing.Literal else ()
            if choices or isinstance(value, bool):
                widget: QLineEdit | QComboBox = QComboBox()
                widget.addItems([str(c) for c in choices] if choices else ["True", "False"])
                widget.setCurrentText(str(value))
                widget.currentTextChanged.connect(lambda _t: self.edited.emit())
            else:
                widget = QLineEdit("" if value is None else str(value))
                widget.editingFinished.connect(self.edited)
            widget.setObjectName(f"{self.prefix}{f.name}")
            label = QLabel(f.name)
            if f.name in self.tips:
                widget.setToolTip(self.tips[f.name])
                label.setToolTip(self.tips[f.name])
            self.layout_.addRow(label, widget)
            self.fields[f.name] = widget

    def texts(self) -> dict[str, str]:
        """The non-empty values as typed (for engines that parse ``key=value`` strings themselves)."""
        out = {}
        for name, widget in self.fields.items():
            text = widget.currentText() if isinstance(widget, QComboBox) else widget.text()
            if text != "":
                out[name] = text
        return out

    def typed(self) -> dict[str, Any]:
        """The values converted to the type of each field's default; an empty optional field is None.

        Raises ValueError naming the field and the text it could not read.
        """
        values: dict[str, Any] = {}
        for name, widget in self.fields.items():
            text = (widget.currentText() if isinstance(widget, QComboBox) else widget.text()).strip()
            current = getattr(self.defaults, name)
            if text == "" and current is None:
                values[name] = None
                continue
            kind = type(current) if current is not None else int
            try:
                values[name] = parse_bool(text) if isinstance(current, bool) else kind(text)
            except Exception:
                raise ValueError(f"{name}: cannot read {text!r} as {kind.__name__}") from None
        return values


def error_label(name: str) -> QLabel:
    """The red, wrapping line under a form where an invalid value says what is wrong."""
    label = QLabel("")
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setStyleSheet("color: #c62828")
    return label
