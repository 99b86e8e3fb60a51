"""A form generated from a dataclass: one row per field, a combo box for Literal and bool fields,
an optional tooltip, human label and percent display per field, and the less used fields under a
collapsible "Advanced" section when the caller names the primary ones.

Used for attack parameters, defense configs and the front-end settings of a ``.pt`` import, so
every editable engine dataclass looks and parses the same way.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFormLayout, QLabel, QLineEdit, QToolButton, QVBoxLayout, QWidget

from core.runtime import parse_bool

__all__ = ["DataclassForm", "error_label"]


def _percent_text(value: float) -> str:
    return f"{100 * value:.6g}"


class DataclassForm(QWidget):
    """Rows for the fields of a dataclass; ``edited`` fires when a value is committed.

    ``labels`` maps a field to the text people read (default: the field's name), ``percent``
    names fields that are shares of 1 shown and typed in percent, and ``primary`` (when given)
    the fields shown first: the others go under a collapsed "Advanced" section.
    """

    edited = Signal()

    def __init__(self, prefix: str, hidden: typing.Collection[str] = (),
                 tips: typing.Mapping[str, str] | None = None, labels: typing.Mapping[str, str] | None = None,
                 percent: typing.Collection[str] = (), primary: typing.Collection[str] | None = None) -> None:
        super().__init__()
        self.prefix = prefix
        self.hidden = set(hidden)
        self.tips = dict(tips or {})
        self.labels = dict(labels or {})
        self.percent = set(percent)
        self.primary = None if primary is None else set(primary)
        self.layout_ = QFormLayout()
        self.advanced_layout = QFormLayout()
        self.advanced_box = QWidget()
        self.advanced_box.setLayout(self.advanced_layout)
        self.advanced_box.setVisible(False)
        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setObjectName(f"{prefix}advanced")
        self.advanced_toggle.setText("Advanced")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.setAutoRaise(True)
        self.advanced_toggle.toggled.connect(self.show_advanced)
        self.advanced_toggle.setVisible(False)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addLayout(self.layout_)
        outer.addWidget(self.advanced_toggle)
        outer.addWidget(self.advanced_box)
        self.fields: dict[str, QLineEdit | QComboBox] = {}
        self.defaults: Any = None

    def show_advanced(self, shown: bool) -> None:
        """Unfold (or fold) the "Advanced" rows."""
        self.advanced_toggle.setChecked(shown)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.advanced_box.setVisible(shown)

    def build(self, cls: type, values: Any = None) -> None:
        """Replace the rows with ``cls``'s fields, showing ``values`` (an instance) or the defaults."""
        for layout in (self.layout_, self.advanced_layout):
            while layout.rowCount():
                layout.removeRow(0)
        self.fields.clear()
        self.defaults = cls()
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in self.hidden:
                continue
            choices = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is typing.Literal else ()
            if choices or isinstance(getattr(self.defaults, f.name), bool):
                widget: QLineEdit | QComboBox = QComboBox()
                widget.addItems([str(c) for c in choices] if choices else ["True", "False"])
                widget.currentTextChanged.connect(lambda _t: self.edited.emit())
            else:
                widget = QLineEdit()
                widget.editingFinished.connect(self.edited)
            widget.setObjectName(f"{self.prefix}{f.name}")
            label = QLabel(self.labels.get(f.name, f.name))
            label.setObjectName(f"{self.prefix}{f.name}_label")
            if f.name in self.tips:
                widget.setToolTip(self.tips[f.name])
                label.setToolTip(self.tips[f.name])
            advanced = self.primary is not None and f.name not in self.primary
            (self.advanced_layout if advanced else self.layout_).addRow(label, widget)
            self.fields[f.name] = widget
        self.advanced_toggle.setVisible(self.advanced_layout.rowCount() > 0)
        self.set_values(values if values is not None else self.defaults)

    def set_values(self, values: Any) -> None:
        """Show the fields of ``values`` (an instance of the form's dataclass), without emitting ``edited``."""
        self.blockSignals(True)
        try:
            for name, widget in self.fields.items():
                value = getattr(values, name)
                text = "" if value is None else _percent_text(value) if name in self.percent else str(value)
                if isinstance(widget, QComboBox):
                    widget.setCurrentText(text)
                else:
                    widget.setText(text)
        finally:
            self.blockSignals(False)

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
            label = self.labels.get(name, name)
            try:
                if isinstance(current, bool):
                    values[name] = parse_bool(text)
                elif name in self.percent:
                    values[name] = float(text.rstrip("% ")) / 100
                else:
                    values[name] = kind(text)
            except Exception:
                wanted = "a number in percent" if name in self.percent else kind.__name__
                raise ValueError(f"{label}: cannot read {text!r} as {wanted}") from None
        return values


def error_label(name: str) -> QLabel:
    """The red, wrapping line under a form where an invalid value says what is wrong."""
    label = QLabel("")
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setStyleSheet("color: #c62828")
    return label
