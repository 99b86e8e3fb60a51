"""The clip browser: file, speaker, label, the model's prediction and confidence; filters."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

__all__ = ["ClipBrowser", "ALL_LABELS"]

ALL_LABELS = "all labels"
COLUMNS = ("clip", "split", "speaker", "label", "prediction", "confidence")


class ClipBrowser(QWidget):
    """Emits ``clip_selected(index into the dataset)``."""

    clip_selected = Signal(int)

    def __init__(self) -> None:
        super().__init__()
        self.label_filter = QComboBox()
        self.label_filter.setObjectName("label_filter")
        self.wrong_only = QCheckBox("prediction wrong")
        self.wrong_only.setObjectName("wrong_only")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("clip_table")
        self.table.verticalHeader().setVisible(False)  # the clip's name says which it is: room for the columns
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        # Interactive, sized once per bulk change: ResizeToContents re-measures every row on every
        # cell change, which made filling 600 predictions take most of a minute
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        top = QHBoxLayout()
        top.addWidget(self.label_filter)
        top.addWidget(self.wrong_only)
        top.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table)
        self.label_filter.currentIndexChanged.connect(self._apply_filter)
        self.wrong_only.toggled.connect(self._apply_filter)
        self.table.itemSelectionChanged.connect(self._selected)
        self._labels: list[str] = []
        self._wrong: list[bool] = []

    def set_clips(
        self, names: list[str], splits: list[str], speakers: list[str], labels: list[str], classes: list[str]
    ) -> None:
        self.table.setSortingEnabled(False)
        self.table.setUpdatesEnabled(False)
        self.table.setRowCount(len(names))
        for row, values in enumerate(zip(names, splits, speakers, labels)):
            for col, value in enumerate(values):
                item = QTableWidgetItem(value)
                if col == 0:
                    item.setData(Qt.ItemDataRole.UserRole, row)
                self.table.setItem(row, col, item)
            for col in (4, 5):
                self.table.setItem(row, col, QTableWidgetItem(""))
        self._labels = list(labels)
        self._wrong = [False] * len(names)
        self.label_filter.blockSignals(True)
        self.label_filter.clear()
        self.label_filter.addItems([ALL_LABELS, *classes])
        self.label_filter.blockSignals(False)
        self._apply_filter()
        self._finish_bulk()

    def set_predictions(self, predicted: list[str], confidence: list[float]) -> None:
        self.table.setUpdatesEnabled(False)
        for row, (p, c) in enumerate(zip(predicted, confidence)):
            self.table.item(row, 4).setText(p)
            self.table.item(row, 5).setText(f"{100 * c:.1f} %")
            self._wrong[row] = p != self._labels[row]
        self._apply_filter()
        self._finish_bulk()

    def _finish_bulk(self) -> None:
        self.table.resizeColumnsToContents()
        self.table.setUpdatesEnabled(True)

    def visible_rows(self) -> list[int]:
        return [r for r in range(self.table.rowCount()) if not self.table.isRowHidden(r)]

    def select(self, index: int) -> None:
        self.table.selectRow(index)

    def _apply_filter(self) -> None:
        label = self.label_filter.currentText()
        for row in range(self.table.rowCount()):
            hide = (label not in ("", ALL_LABELS) and self._labels[row] != label) or (
                self.wrong_only.isChecked() and not self._wrong[row]
            )
            self.table.setRowHidden(row, hide)

    def _selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.clip_selected.emit(int(self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)))
