"""GUI tests: the application's log, settings and data files go to the test's own folder."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QFileDialog

from core.attacks import get_attack
from core.checkpoint import save_checkpoint
from core.data.speech_commands import load_speech_commands
from core.features import FrontEndConfig
from core.training import TrainConfig, train_model
from tests.conftest import TINY_WORDS, write_speech_commands


@pytest.fixture(autouse=True)
def unanswered_questions(monkeypatch):
    """A modal question nobody answers would hang the test (pytest-qt closes windows at teardown, and
    closing with an unexported repair asks): answer Discard, and keep the questions asked for tests to read.
    A test that wants another answer patches ``QMessageBox.question`` itself."""
    from PySide6.QtWidgets import QMessageBox

    asked: list[str] = []

    def question(_parent, title, *_args, **_kwargs):
        asked.append(title)
        return QMessageBox.StandardButton.Discard

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    return asked


@pytest.fixture(autouse=True)
def private_app_files(tmp_path, monkeypatch):
    monkeypatch.setenv("GNFT_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("GNFT_SETTINGS_FILE", str(tmp_path / "settings.ini"))
    monkeypatch.delenv("GNFT_AUDIO_DEVICE", raising=False)
    monkeypatch.setenv("GNFT_DATA_DIR", str(tmp_path / "data"))


TARGET = 2  # "up"


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("gui")
    data_dir = write_speech_commands(root / "sc", speakers=16, per_speaker=2)
    data = load_speech_commands(data_dir, TINY_WORDS)
    attack = get_attack("badnets", kind="noise", poison_rate=0.2, level_db=-10, seed=0, target=TARGET)
    result = train_model(
        data,
        TrainConfig(model="smallcnn", epochs=8, batch_size=32, lr=3e-3, patience=8, device="cpu"),
        attack,
        front_end=FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320),
        show_progress=False,
    )
    assert result.report["attack_success_rate"] >= 0.8
    model_path = save_checkpoint(root / "backdoored.safetensors", result.model, result.metadata)
    return root, data_dir, model_path


def open_workspace(qtbot, window, workspace, monkeypatch):
    root, data_dir, model_path = workspace
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(model_path), "")))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(data_dir)))
    with qtbot.waitSignal(window.model_loaded, timeout=10000):
        window.action_open_model.trigger()
    with qtbot.waitSignal(window.predictions_ready, timeout=60000):
        window.action_open_data.trigger()


@pytest.fixture
def window(qtbot, workspace, monkeypatch):
    """A main window with the backdoored workspace opened through its File actions."""
    from gnft_gui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    open_workspace(qtbot, win, workspace, monkeypatch)
    return win
