"""Choose an attack and edit its parameters in a form generated from its parameter dataclass."""

from __future__ import annotations

import dataclasses
import typing

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFormLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from core.attacks import Attack, get_attack, list_attacks
from core.errors import GnftError

__all__ = ["AttackPanel", "NO_ATTACK"]

NO_ATTACK = "(none)"


class AttackPanel(QWidget):
    """Emits ``attack_changed(Attack or None)`` whenever the choice or a valid parameter changes;
    an invalid value shows its error under the form and keeps the last valid attack."""

    attack_changed = Signal(object)

    def __init__(self, sample_rate: int = 16000) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.choice = QComboBox()
        self.choice.setObjectName("attack_choice")
        self.choice.addItems([NO_ATTACK, *list_attacks()])
        self.form_host = QWidget()
        self.form = QFormLayout(self.form_host)
        self.error = QLabel("")
        self.error.setObjectName("attack_error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c62828")
        layout = QVBoxLayout(self)
        layout.addWidget(self.choice)
        layout.addWidget(self.form_host)
        layout.addWidget(self.error)
        layout.addStretch(1)
        self.fields: dict[str, QLineEdit | QComboBox] = {}
        self.attack: Attack | None = None
        self.choice.currentTextChanged.connect(self._rebuild_form)

    def set_attack(self, attack: Attack | None) -> None:
        """Show ``attack`` (e.g. the one recorded in a checkpoint) with its parameter values."""
        self.choice.blockSignals(True)
        self.choice.setCurrentText(attack.name if attack is not None else NO_ATTACK)
        self.choice.blockSignals(False)
        self._rebuild_form(self.choice.currentText(), attack)

    def _rebuild_form(self, name: str, attack: Attack | None = None) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self.fields.clear()
        self.error.setText("")
        if name == NO_ATTACK:
            self.attack = None
            self.attack_changed.emit(None)
            return
        cls = list_attacks()[name]
        params = attack.params if attack is not None else cls.Params()
        hints = typing.get_type_hints(cls.Params)
        for f in dataclasses.fields(cls.Params):
            value = getattr(params, f.name)
            choices = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is typing.Literal else ()
            if choices:
                widget = QComboBox()
                widget.addItems([str(c) for c in choices])
                widget.setCurrentText(str(value))
                widget.currentTextChanged.connect(self._changed)
            else:
                widget = QLineEdit("" if value is None else str(value))
                widget.editingFinished.connect(self._changed)
            widget.setObjectName(f"param_{f.name}")
            self.form.addRow(f.name, widget)
            self.fields[f.name] = widget
        if attack is not None:
            self.attack = attack
            self.attack_changed.emit(attack)
        else:
            self._changed()

    def values(self) -> dict[str, str]:
        return {k: (w.currentText() if isinstance(w, QComboBox) else w.text()) for k, w in self.fields.items()
                if (w.currentText() if isinstance(w, QComboBox) else w.text()) != ""}

    def _changed(self) -> None:
        name = self.choice.currentText()
        if name == NO_ATTACK:
            return
        try:
            attack = get_attack(name, sample_rate=self.sample_rate, **self.values())
        except (GnftError, ValueError, TypeError) as err:
            self.error.setText(str(err))
            return
        self.error.setText("")
        self.attack = attack
        self.attack_changed.emit(attack)
