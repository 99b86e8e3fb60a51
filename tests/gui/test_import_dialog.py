"""Importing a plain PyTorch state dict through the window: the dialog names what a .pt lacks."""

from __future__ import annotations

import pickle

import pytest
import torch
from PySide6.QtWidgets import QDialogButtonBox

from core.checkpoint import load_checkpoint
from gnft_gui.main_window import MainWindow
from gnft_gui.views.import_dialog import parse_arch_args


def _fill_front_end(dialog, front_end: dict) -> None:
    for name, widget in dialog.front_end.fields.items():
        value = front_end[name]
        if hasattr(widget, "setCurrentText"):
            widget.setCurrentText(str(value))
        else:
            widget.setText(str(value))


def _ok(dialog) -> None:
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()


def test_pt_state_dict_imports_into_the_workspace_and_exports(qtbot, window, workspace, tmp_path):
    original, meta = window.model, window.meta
    weights = tmp_path / "third_party.pt"
    torch.save({"state_dict": {k: v.clone() for k, v in original.state_dict().items()}}, weights)
    window.open_path(str(weights))
    dialog = window.import_dialog
    assert dialog.isVisible() and window.model is original  # nothing replaced until the import succeeds
    assert [c.strip() for c in dialog.classes.text().split(",")] == list(window.data.classes)  # from the dataset

    # the wrong architecture: the mismatch is named, the dialog stays open, the workspace keeps its model
    dialog.architecture.setCurrentText("resnet")
    _fill_front_end(dialog, meta["front_end"])
    _ok(dialog)
    assert "resnet" in dialog.error.text() and dialog.isVisible() and window.model is original

    dialog.architecture.setCurrentText(meta["architecture"])
    with qtbot.waitSignal(window.predictions_ready, timeout=60000):
        _ok(dialog)
    assert not dialog.isVisible() and dialog.error.text() == ""
    assert window.model is not original and window.model_path == weights
    assert "imported, not saved" in window.windowTitle()
    for key, value in original.state_dict().items():
        assert torch.equal(window.model.state_dict()[key], value), key
    assert window.meta["provenance"]["training"]["imported_from"] == str(weights)

    exported = window.export_model(tmp_path / "converted.safetensors")
    model, saved = load_checkpoint(exported)
    assert saved["architecture"] == meta["architecture"] and saved["front_end"] == meta["front_end"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in original.state_dict().items())
    assert weights.exists()  # the .pt is never touched


class _RunsCode:
    """Unpickling this would create a file: the proof that no code from the file ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_untrusted_pickle_is_refused_in_the_dialog(qtbot, workspace, tmp_path):
    target = tmp_path / "created_by_the_pickle"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"weight": _RunsCode(target)}, protocol=2))
    window = MainWindow()
    qtbot.addWidget(window)
    dialog = window.import_model(evil)
    dialog.classes.setText("a, b")
    _ok(dialog)
    assert "refused" in dialog.error.text() and "nothing in it was run" in dialog.error.text()
    assert "weights_only" not in dialog.error.text()
    assert dialog.isVisible() and window.model is None
    assert not target.exists()


def test_class_list_and_arch_args_are_checked_before_loading(qtbot, tmp_path):
    window = MainWindow()
    qtbot.addWidget(window)
    dialog = window.import_model(tmp_path / "missing.pt")
    assert dialog.classes.text() == ""  # no dataset open: nothing to prefill
    dialog.classes.setText("yes")
    _ok(dialog)
    assert "at least two" in dialog.error.text()
    dialog.classes.setText("yes, no, yes")
    _ok(dialog)
    assert "appears twice" in dialog.error.text()
    dialog.classes.setText("yes, no")
    dialog.front_end.fields["sample_rate"].setText("fast")
    _ok(dialog)
    assert "sample_rate" in dialog.error.text() and "'fast'" in dialog.error.text()
    dialog.front_end.fields["sample_rate"].setText("16000")
    _ok(dialog)
    assert "no such model file" in dialog.error.text() and dialog.isVisible()


def test_parse_arch_args():
    assert parse_arch_args("") == {}
    assert parse_arch_args("width=32, dropout=0.1, readout=last, bias=True") == {
        "width": 32,
        "dropout": 0.1,
        "readout": "last",
        "bias": True,
    }
    with pytest.raises(ValueError, match="not key=value"):
        parse_arch_args("width")
