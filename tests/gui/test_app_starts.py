"""The application opens (offscreen Qt, real widgets)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from PySide6.QtWidgets import QDockWidget

from gnft_gui.app import build_parser
from gnft_gui.main_window import MainWindow


def test_main_window_opens_with_its_panels(qtbot):
    window = MainWindow(model_path=None, data_path=None)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert window.isVisible() and window.windowTitle() == "GN-FT Workbench"
    docks = {d.objectName() for d in window.findChildren(QDockWidget)}
    assert docks == {"dock_clips", "dock_attack", "dock_defense", "dock_log"}
    assert "Open a model" in window.status_label.text()
    assert window.requested == {"model": None, "data": None, "demo": False}


def test_command_line_options():
    args = build_parser().parse_args(["--demo", "--model", "a.safetensors", "--data", "d"])
    assert args.demo and args.model == "a.safetensors" and args.data == "d"


def test_entry_point_help_runs():
    out = subprocess.run([sys.executable, "-m", "gnft_gui.app", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--demo" in out.stdout


def test_installed_gnft_gui_starts_and_exits_cleanly():
    """The console entry point itself: a real QApplication event loop, offscreen."""
    exe = shutil.which("gnft-gui", path=str(Path(sys.executable).parent))
    assert exe, "gnft-gui is not installed next to this Python (pip install -e .)"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([exe, "--self-test"], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
