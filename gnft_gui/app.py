"""The ``gnft-gui`` entry point: command line, QApplication, main window, and ``--self-test``
(offscreen when there is no display; the checks are in :mod:`gnft_gui.self_test`)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from gnft_gui.self_test import (
    BUILTIN_TIMEOUT_S,
    OPEN_TIMEOUT_S,
    SELF_TEST,
    SelfTest,
    SelfTestFailure,
    audio_line,
    check_icon,
    write_builtin_workspace,
)

__all__ = ["build_parser", "ensure_display", "main", "parse_args"]

APP_ID = "io.github.gnft_workbench.GnftWorkbench"  # packaging/: the .desktop entry and AppStream metainfo
ICON = Path(__file__).resolve().parents[1] / "resources" / "gnft-workbench.svg"  # in a checkout and in the bundle
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gnft-gui", description="GN-FT Workbench: find and remove backdoors from speech-command classifiers."
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="what to open, as a file manager passes it (Exec=gnft-gui %%F): a checkpoint "
        "(.safetensors, .pt) is taken as --model, a folder as --data",
    )
    p.add_argument("--model", help="checkpoint to open (.safetensors)")
    p.add_argument("--data", help="dataset folder to open")
    p.add_argument("--demo", action="store_true", help="open the demo workspace")
    p.add_argument(
        "--self-test",
        action="store_true",
        help="smoke test of an installation or bundle: start (offscreen when there is no display), open "
        "what --demo/--model/--data name, or else the cached demo, or else a tiny built-in model and "
        "a few generated clips; predict, check the outputs are finite probabilities, print what "
        "was checked and exit 0 (on failure: one line on stderr, exit 1)",
    )
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, with positional PATHs folded into ``model`` and ``data``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for path in args.paths:
        if Path(path).is_dir():
            key = "data"
        elif Path(path).suffix.lower() in CHECKPOINT_SUFFIXES:
            key = "model"
        else:
            parser.error(f"{path}: neither a dataset folder nor a checkpoint (.safetensors, .pt)")
        if getattr(args, key) is not None:
            parser.error(
                f"{path}: a {'dataset' if key == 'data' else 'model'} to open is already given ({getattr(args, key)})"
            )
        setattr(args, key, path)
    return args


def ensure_display(environ: dict[str, str] | os._Environ = os.environ) -> bool:
    """Use Qt's offscreen platform when no display can be reached (Linux, ``QT_QPA_PLATFORM``,
    ``DISPLAY`` and ``WAYLAND_DISPLAY`` all unset). Returns True when it chose offscreen."""
    if sys.platform in ("win32", "darwin") or environ.get("QT_QPA_PLATFORM"):
        return False
    if environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"):
        return False
    environ["QT_QPA_PLATFORM"] = "offscreen"
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Start the application; returns the Qt event loop's exit code."""
    from core.interrupts import restore_interrupts

    restore_interrupts()  # the start-up's quiet Ctrl-C (gnft_gui/__init__.py) is over
    started = time.perf_counter()
    args = parse_args(argv)
    scratch = None
    if args.self_test:
        ensure_display()
        scratch = tempfile.TemporaryDirectory(prefix="gnft-self-test-")
        # a self-test leaves the user's recent files and window layout alone
        os.environ.setdefault("GNFT_SETTINGS_FILE", str(Path(scratch.name) / "settings.ini"))
    try:
        return _run(args, Path(scratch.name) if scratch else None, started)
    finally:
        if scratch is not None:
            scratch.cleanup()


def _run(args: argparse.Namespace, scratch: Path | None, started: float) -> int:
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    builtin = None
    demo = args.demo
    if args.self_test and not (args.demo or args.model or args.data):
        from core.demo import cached_demo, demo_dir

        demo = cached_demo(demo_dir()) is not None
        if not demo:
            os.environ["GNFT_CACHE_DIR"] = str(scratch / "cache")  # the generated clips are not worth caching
            try:
                builtin = write_builtin_workspace(scratch / "builtin")
            except Exception as err:
                print(
                    f"gnft-gui --self-test failed: cannot make the built-in model and clips "
                    f"({type(err).__name__}: {err})",
                    file=sys.stderr,
                )
                return 1

    from gnft_gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("GN-FT Workbench")
    app.setOrganizationName("GN-FT Workbench")
    app.setDesktopFileName(APP_ID)
    if ICON.is_file():
        app.setWindowIcon(QIcon(str(ICON)))
    window = MainWindow(model_path=args.model, data_path=args.data, demo=demo)
    window.show()
    sys.excepthook = window.unexpected_error  # anything uncaught: logged, and a dialog naming the log file
    app.aboutToQuit.connect(window.shutdown)
    if not args.self_test:
        window.warm_up()
        return app.exec()

    from PySide6.QtCore import QTimer

    try:
        audio = audio_line()
        check_icon(app, ICON)
    except SelfTestFailure as err:
        print(f"gnft-gui --self-test failed: {err}", file=sys.stderr)
        return 1
    import torch
    from PySide6 import __version__ as pyside_version

    print(
        f"{SELF_TEST}: Qt platform {app.platformName()}, PySide6 {pyside_version}, torch {torch.__version__}; "
        f"audio: {audio}",
        flush=True,
    )
    expect_model = bool(builtin or demo or args.model)
    expect_data = bool(builtin or demo or args.data)
    label = (
        "the built-in model and generated clips"
        if builtin
        else "the cached demo"
        if demo and not args.demo
        else "the demo"
        if demo
        else "the workspace"
    )
    test = SelfTest(
        app,
        window,
        expect_model=expect_model,
        expect_data=expect_data,
        timeout_s=BUILTIN_TIMEOUT_S if builtin else OPEN_TIMEOUT_S,
        label=label,
        started=started,
    )
    if builtin:
        model_path, data_dir = builtin
        if window.open_model(model_path):  # the same paths as File > Open Model / Open Dataset
            window.open_data(data_dir)
    if expect_data and expect_model:
        test.wait_for(window.predictions_ready)
    elif expect_data:
        test.wait_for(window.data_loaded)
    else:  # a model alone (or nothing) is opened before the event loop starts
        QTimer.singleShot(0, test.check)
    if window.last_error is not None:  # opening failed before the self-test was listening
        QTimer.singleShot(0, test.check)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
