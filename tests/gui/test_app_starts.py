"""The application opens (offscreen Qt, real widgets)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtWidgets import QDockWidget

from core.demo import cached_demo, demo_dir, ensure_demo
from gnft_gui.app import build_parser, ensure_display, parse_args
from gnft_gui.main_window import MainWindow
from gnft_gui.self_test import (
    BUILTIN_CLASSES,
    SelfTestFailure,
    check_window,
    generated_clips,
    write_builtin_workspace,
)


def test_main_window_opens_with_its_panels(qtbot):
    window = MainWindow(model_path=None, data_path=None)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert window.isVisible() and window.windowTitle() == "GN-FT Workbench"
    docks = {d.objectName() for d in window.findChildren(QDockWidget)}
    assert docks == {"dock_clips", "dock_attack", "dock_defense", "dock_scan", "dock_log"}
    assert "Open a model" in window.status_label.text()
    assert window.requested == {"model": None, "data": None, "demo": False}


def test_command_line_options():
    args = build_parser().parse_args(["--demo", "--model", "a.safetensors", "--data", "d"])
    assert args.demo and args.model == "a.safetensors" and args.data == "d"


def test_entry_point_help_runs():
    out = subprocess.run([sys.executable, "-m", "gnft_gui.app", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--demo" in out.stdout


# ---------------------------------------------------------------- gnft-gui --self-test


def _gnft_gui() -> str:
    exe = shutil.which("gnft-gui", path=str(Path(sys.executable).parent))
    assert exe, "gnft-gui is not installed next to this Python (pip install -e .)"
    return exe


def test_installed_gnft_gui_self_test_without_a_cached_demo_checks_the_builtin_model(tmp_path):
    """The console entry point itself, a real event loop. No demo in $GNFT_DATA_DIR: a random-weight smallcnn
    and generated clips, through the window's open paths; headless without being told (no display, no
    QT_QPA_PLATFORM); no user settings written."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY", "GNFT_SETTINGS_FILE")
    }
    env.update(GNFT_DATA_DIR=str(tmp_path / "empty"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    out = subprocess.run([_gnft_gui(), "--self-test"], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert "Qt platform offscreen" in out.stdout
    assert "model: self-test-smallcnn.safetensors (smallcnn, 3 classes)" in out.stdout
    assert "generated clips: tone -> " in out.stdout and "(6 clips, all predicted)" in out.stdout
    assert "passed in" in out.stdout and "(the built-in model and generated clips)" in out.stdout
    assert not (tmp_path / "config").exists() or not any((tmp_path / "config").rglob("*.conf"))


def test_self_test_opens_the_cached_demo_when_there_is_one():
    ensure_demo(clips_per_word=6, epochs=1)  # into $GNFT_DATA_DIR (the test's folder)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([_gnft_gui(), "--self-test"], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert "model: badnets_smallcnn.safetensors (smallcnn, 10 classes)" in out.stdout
    assert f"dataset: {cached_demo(demo_dir()).data} (60 clips, all predicted)" in out.stdout
    assert "(the cached demo)" in out.stdout and "self-test-smallcnn" not in out.stdout


def test_self_test_fails_with_one_line_and_exit_1_on_a_broken_model(tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run(
        [_gnft_gui(), "--self-test", str(broken)], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 1
    failed = [line for line in out.stderr.splitlines() if line.startswith("gnft-gui --self-test failed:")]
    assert len(failed) == 1 and "broken.safetensors" in failed[0], out.stderr
    assert "passed" not in out.stdout


def test_no_display_means_offscreen_and_a_display_or_a_choice_is_kept():
    env: dict[str, str] = {}
    assert ensure_display(env) is True and env == {"QT_QPA_PLATFORM": "offscreen"}
    for given in ({"DISPLAY": ":0"}, {"WAYLAND_DISPLAY": "wayland-0"}, {"QT_QPA_PLATFORM": "xcb"}):
        env = dict(given)
        assert ensure_display(env) is False and env == given


def test_positional_paths_are_the_model_and_the_dataset(tmp_path, capsys):
    (tmp_path / "clips").mkdir()
    args = parse_args([str(tmp_path / "m.safetensors"), str(tmp_path / "clips")])
    assert args.model == str(tmp_path / "m.safetensors") and args.data == str(tmp_path / "clips")
    with pytest.raises(SystemExit) as exit_info:
        parse_args([str(tmp_path / "notes.txt")])
    assert exit_info.value.code == 2 and "neither a dataset folder nor a checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--model", "a.safetensors", "b.safetensors"])
    assert "a model to open is already given (a.safetensors)" in capsys.readouterr().err


def test_builtin_workspace_opens_in_the_window_and_nan_outputs_fail_the_check(qtbot, tmp_path):
    model_path, data_dir = write_builtin_workspace(tmp_path)
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    assert window.open_model(model_path)
    with qtbot.waitSignal(window.predictions_ready, timeout=60000):
        window.open_data(data_dir)
    assert window.meta["classes"] == list(BUILTIN_CLASSES) and window.meta["architecture"] == "smallcnn"
    assert window.data.splits["train"].numel() == 3 and window.data.splits["test"].numel() == 3
    lines = check_window(window, expect_model=True, expect_data=True)
    assert lines[0] == "model: self-test-smallcnn.safetensors (smallcnn, 3 classes)"
    assert lines[-1].endswith("(6 clips, all predicted)")
    with torch.no_grad():
        window.model[1].fc.bias.fill_(float("nan"))
    with pytest.raises(SelfTestFailure, match="not finite"):
        check_window(window, expect_model=True, expect_data=True)


def test_generated_clips_are_distinct_bounded_and_sized_for_the_model():
    clips = generated_clips(8000, 4000, variant=1)
    assert list(clips) == list(BUILTIN_CLASSES)
    waves = np.stack(list(clips.values()))
    assert waves.shape == (3, 4000) and waves.dtype == np.float32
    assert np.isfinite(waves).all() and np.abs(waves).max() < 0.5 and np.abs(waves).max() > 0.05
    assert not np.allclose(clips["tone"], generated_clips(8000, 4000, variant=0)["tone"])


def test_demo_build_progress_is_drawn_in_the_gui_thread(qtbot, monkeypatch):
    """The demo build's progress reached the progress bar from the worker thread (a plain function
    slot runs in the emitting thread), which crashed the bundle's `--demo --self-test`."""
    import core.demo
    from core.events import Cancelled, StepInfo

    def fake_build(rebuild=False, observer=None, **_kwargs):
        for step in range(1, 4):
            observer.on_step(StepInfo(phase="train", epoch=0, step=step, total_steps=3, loss=1.0))
        raise Cancelled()

    monkeypatch.setattr(core.demo, "ensure_demo", fake_build)
    window = MainWindow()
    qtbot.addWidget(window)
    drawn_in = []
    monkeypatch.setattr(
        window.progress,
        "setValue",
        lambda value: drawn_in.append((value, threading.current_thread() is threading.main_thread())),
    )
    task = window.open_demo()
    with qtbot.waitSignal(task.cancelled, timeout=60000):
        pass
    qtbot.waitUntil(lambda: len(drawn_in) == 3, timeout=10000)  # queued events, delivered by the GUI loop
    assert drawn_in == [(1, True), (2, True), (3, True)]
