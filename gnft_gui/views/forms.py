"""A form generated from a dataclass: one row per field, a combo box for Literal and bool fields,
a check box per word for a comma list of known words (``option(among=...)``), a tooltip, human
label and percent display per field, and the less used fields under a collapsible "Advanced" section
when some are primary: all read from the fields' metadata (:mod:`core.options`).

Used for attack parameters, defense configs and the front-end settings of a ``.pt`` import, so
every editable engine dataclass looks and parses the same way.
"""

from __future__ import annotations

import typing
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.options import OptionSpec, comma_items, convert, fields_of, type_name

__all__ = ["DataclassForm", "WordChecks", "error_label"]


def _percent_text(value: float) -> str:
    return f"{100 * value:.6g}"


class WordChecks(QWidget):
    """A check box per word of a comma-list field, two to a row (a line of typed words would scroll out
    of a narrow dock); reads and writes the list as text in the words' own order, like a line edit."""

    edited = Signal()

    def __init__(self, words: typing.Sequence[str]) -> None:
        super().__init__()
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setVerticalSpacing(2)
        self.boxes: dict[str, QCheckBox] = {}
        for i, word in enumerate(words):
            box = QCheckBox(word)
            box.setObjectName(f"word_{word}")
            box.toggled.connect(lambda _on: self.edited.emit())
            grid.addWidget(box, i // 2, i % 2)
            self.boxes[word] = box

    def text(self) -> str:
        """The checked words, comma-separated ("" when none is)."""
        return ",".join(word for word, box in self.boxes.items() if box.isChecked())

    def setText(self, text: str) -> None:  # noqa: N802 (the name QLineEdit's callers use)
        """Check exactly the words of the comma list ``text`` (words it does not know are ignored)."""
        wanted = set(comma_items(text))
        for word, box in self.boxes.items():
            box.blockSignals(True)
            box.setChecked(word in wanted)
            box.blockSignals(False)


class DataclassForm(QWidget):
    """Rows for the fields of a dataclass; ``edited`` fires when a value is committed.

    By default each field's metadata (:func:`core.options.fields_of`) gives its label, tooltip,
    percent display (shares of 1 shown and typed in percent), whether it is hidden, and whether it
    is primary: when some fields are, the others go under a collapsed "Advanced" section. The
    keyword arguments, when given, replace the metadata's choice for every class the form shows.
    """

    edited = Signal()

    def __init__(
        self,
        prefix: str,
        hidden: typing.Collection[str] | None = None,
        tips: typing.Mapping[str, str] | None = None,
        labels: typing.Mapping[str, str] | None = None,
        percent: typing.Collection[str] | None = None,
        primary: typing.Collection[str] | None = None,
    ) -> None:
        super().__init__()
        self.prefix = prefix
        self._given = {"hidden": hidden, "tips": tips, "labels": labels, "percent": percent, "primary": primary}
        self.hidden: set[str] = set()
        self.tips: dict[str, str] = {}
        self.labels: dict[str, str] = {}
        self.percent: set[str] = set()
        self.primary: set[str] | None = None
        self.specs: dict[str, OptionSpec] = {}
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
        self.fields: dict[str, QLineEdit | QComboBox | WordChecks] = {}
        self.defaults: Any = None

    def show_advanced(self, shown: bool) -> None:
        """Unfold (or fold) the "Advanced" rows."""
        self.advanced_toggle.setChecked(shown)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.advanced_box.setVisible(shown)

    def _describe(self, specs: list[OptionSpec]) -> None:
        """Labels, tips, percent, hidden and primary fields of the class being shown: the metadata's,
        or what the caller gave."""
        given = self._given
        self.hidden = set(given["hidden"]) if given["hidden"] is not None else {s.name for s in specs if s.hidden}
        self.tips = dict(given["tips"]) if given["tips"] is not None else {s.name: s.help for s in specs if s.help}
        self.labels = (
            dict(given["labels"])
            if given["labels"] is not None
            else {s.name: s.label for s in specs if s.label != s.name}
        )
        self.percent = set(given["percent"]) if given["percent"] is not None else {s.name for s in specs if s.percent}
        primary = set(given["primary"]) if given["primary"] is not None else {s.name for s in specs if s.primary}
        self.primary = primary if given["primary"] is not None or primary else None

    def build(self, cls: type, values: Any = None) -> None:
        """Replace the rows with ``cls``'s fields, showing ``values`` (an instance) or the defaults."""
        for layout in (self.layout_, self.advanced_layout):
            while layout.rowCount():
                layout.removeRow(0)
        self.fields.clear()
        self.defaults = cls()
        specs = fields_of(cls)
        self._describe(specs)
        self.specs = {s.name: s for s in specs}
        for f in specs:
            if f.name in self.hidden:
                continue
            choices = f.choices or ()
            widget: QLineEdit | QComboBox | WordChecks
            if f.meta.among is not None:
                widget = WordChecks(f.meta.among)
                widget.edited.connect(self.edited)
            elif choices or f.type is bool or isinstance(getattr(self.defaults, f.name), bool):
                widget = QComboBox()
                widget.addItems(list(choices) if choices else ["True", "False"])
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

    def attach(self, name: str, widget: QWidget, below: bool = False) -> None:
        """Put ``widget`` (a button that fills the field, say) beside field ``name``'s editor, in its row (``below``:
        under it, leaving the editor the row's whole width)."""
        editor = self.fields[name]
        for layout in (self.layout_, self.advanced_layout):
            row, _role = layout.getWidgetPosition(editor)
            if row < 0:
                continue
            taken = layout.takeRow(row)
            label = taken.labelItem.widget() if taken.labelItem is not None else None
            box = QWidget()
            box.setObjectName(f"{self.prefix}{name}_row")
            line = QVBoxLayout(box) if below else QHBoxLayout(box)
            line.setContentsMargins(0, 0, 0, 0)
            line.addWidget(editor, 1)
            line.addWidget(widget)
            layout.insertRow(row, label, box)
            return

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
            kind = self.specs[name].type
            label = self.labels.get(name, name)
            try:
                if name in self.percent:
                    values[name] = float(text.rstrip("% ")) / 100
                else:
                    values[name] = convert(text, kind)
            except Exception:
                wanted = "a number in percent" if name in self.percent else type_name(kind)
                raise ValueError(f"{label}: cannot read {text!r} as {wanted}") from None
        return values


def error_label(name: str) -> QLabel:
    """The red, wrapping line under a form where an invalid value says what is wrong."""
    label = QLabel("")
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setStyleSheet("color: #c62828")
    return label
