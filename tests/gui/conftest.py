"""GUI tests: the application's log, settings and data files go to the test's own folder."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def private_app_files(tmp_path, monkeypatch):
    monkeypatch.setenv("GNFT_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("GNFT_SETTINGS_FILE", str(tmp_path / "settings.ini"))
    monkeypatch.delenv("GNFT_AUDIO_DEVICE", raising=False)
    monkeypatch.setenv("GNFT_DATA_DIR", str(tmp_path / "data"))
