"""Choose an attack and edit its parameters in a form generated from its parameter dataclass."""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QVBoxLayout, QWidget

from core.attacks import Attack, get_attack, list_attacks
from core.errors import GnftError

from .forms import DataclassForm, error_label

__all__ = ["AttackPanel", "NO_ATTACK"]

NO_ATTACK = "(none)"


@dataclasses.dataclass
class _Empty:
    """No attack: no parameters."""


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
        self.form = DataclassForm("param_")
        self.form.edited.connect(self._changed)
        self.error = error_label("attack_error")
        layout = QVBoxLayout(self)
        layout.addWidget(self.choice)
        layout.addWidget(self.form)
        layout.addWidget(self.error)
        layout.addStretch(1)
        self.attack: Attack | None = None
        self.choice.currentTextChanged.connect(self._rebuild_form)

    def set_attack(self, attack: Attack | None) -> None:
        """Show ``attack`` (e.g. the one recorded in a checkpoint) with its parameter values."""
        self.choice.blockSignals(True)
        self.choice.setCurrentText(attack.name if attack is not None else NO_ATTACK)
        self.choice.blockSignals(False)
        self._rebuild_form(self.choice.currentText(), attack)

    def _rebuild_form(self, name: str, attack: Attack | None = None) -> None:
        self.error.setText("")
        if name == NO_ATTACK:
            self.form.build(_Empty)
            self.attack = None
            self.attack_changed.emit(None)
            return
        cls = list_attacks()[name]
        self.form.build(cls.Params, attack.params if attack is not None else None)
        if attack is not None:
            self.attack = attack
            self.attack_changed.emit(attack)
        else:
            self._changed()

    @property
    def fields(self) -> dict:
        return self.form.fields

    def values(self) -> dict[str, str]:
        return self.form.texts()

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
