"""The main window: open a model and a dataset, browse clips, see and hear clean vs triggered, export.

It displays and drives a :class:`core.session.Session` (model, its metadata, dataset, attack,
the repair awaiting Accept). Anything slow (decoding a dataset, predicting every clip, a
defense) runs in a :class:`~gnft_gui.worker.Task`; the session changes only when a load
succeeds, so a corrupt file leaves the previous one intact and shows an error dialog that
names the log file.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

import torch
from PySide6.QtCore import QRect, QSettings, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from core import __version__
from core.analysis.model import ZoneWatcher, analyse_model
from core.attacks import Attack, get_attack
from core.audio import AUDIO_FILTER, AUDIO_SUFFIXES, is_audio_file
from core.data.audioset import AudioSet
from core.defenses import DEFENSE_TITLES
from core.errors import ConfigError, GnftError
from core.events import EvalInfo, NeuronStats
from core.metrics import percent
from core.models import analysable_layers
from core.presets import PRESETS, preset_record
from core.repair import RepairResult, check_unlearn_scan
from core.runtime import available_cpus, default_threads, resolve_threads, set_threads
from core.scan import ScanConfig
from core.session import MismatchError, ScanRecord, Session, mix_trigger, predict_clips
from gnft_gui.audio_io import AudioIO
from gnft_gui.views.attack_panel import AttackPanel
from gnft_gui.views.audio_view import AudioView
from gnft_gui.views.clips import ClipBrowser
from gnft_gui.views.defense_panel import DefensePanel
from gnft_gui.views.import_dialog import ImportDialog
from gnft_gui.views.log_view import LogPanel
from gnft_gui.views.neurons import NeuronView
from gnft_gui.views.recorder import RecorderDialog, triggers_dir
from gnft_gui.views.scan_panel import REFERENCE_LABEL, ScanPanel
from gnft_gui.worker import Task

__all__ = ["MainWindow", "fit_to_screen", "log_path", "settings"]

log = logging.getLogger("gnft_gui")
MAX_RECENT = 8
#: The smallest screen the window must fit with every dock open (tests assert the minimum size).
SMALL_SCREEN = (1280, 800)


def fit_to_screen(rect: QRect, available: QRect) -> QRect:
    """``rect`` shrunk to fit ``available`` and moved inside it (a geometry remembered on a bigger
    or another screen must not open off-screen)."""
    width, height = min(rect.width(), available.width()), min(rect.height(), available.height())
    left = min(max(rect.left(), available.left()), available.right() + 1 - width)
    top = min(max(rect.top(), available.top()), available.bottom() + 1 - height)
    return QRect(left, top, width, height)


def log_path() -> Path:
    """The application's log file (``$GNFT_LOG_DIR`` overrides the user log folder)."""
    folder = os.environ.get("GNFT_LOG_DIR")
    if not folder:
        from platformdirs import user_log_dir

        folder = user_log_dir("gnft-workbench", appauthor=False)
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder) / "gnft-gui.log"


def settings() -> QSettings:
    """Window state and recent files (``$GNFT_SETTINGS_FILE`` overrides the user settings file)."""
    path = os.environ.get("GNFT_SETTINGS_FILE")
    return QSettings(path, QSettings.Format.IniFormat) if path else QSettings("GN-FT Workbench", "gnft-gui")


class MainWindow(QMainWindow):
    """Top-level window over a :class:`~core.session.Session`. Signals say when the session changed
    (tests and views wait on them)."""

    model_loaded = Signal(str)
    data_loaded = Signal(str)
    predictions_ready = Signal()
    clip_shown = Signal(int)
    error_shown = Signal(str)
    analysis_done = Signal(object)
    warmed_up = Signal()
    #: a scan ended: its :class:`~core.session.ScanRecord`, or None when cancelled, failed or dropped
    scan_finished = Signal(object)

    def __init__(self, model_path: str | None = None, data_path: str | None = None, demo: bool = False) -> None:
        super().__init__()
        self.requested = {"model": model_path, "data": data_path, "demo": demo}
        self.setWindowTitle("GN-FT Workbench")
        self.setAcceptDrops(True)
        #: what is open; the window shows it and changes it only through its methods
        self.session = Session()
        self.current_clip: int | None = None
        self.tasks: list[Task] = []
        self.last_error: QMessageBox | None = None
        self.last_notice: QMessageBox | None = None
        self.audio = AudioIO()
        self._build_logging()
        self._build_views()
        self._build_menus()
        self._scan_availability()
        state = settings()
        if state.value("geometry") is not None:
            self.restoreGeometry(state.value("geometry"))
            self.restoreState(state.value("state"))
        else:
            self.resize(*SMALL_SCREEN)
        self.keep_on_screen()
        log.info("GN-FT Workbench %s started; log file %s", __version__, log_path())
        if demo:
            self.open_demo()
        if model_path:
            self.open_model(model_path)
        if data_path:
            self.open_data(data_path)

    # ------------------------------------------------------------------ the session, read-only
    @property
    def model(self) -> torch.nn.Module | None:
        return self.session.model

    @property
    def meta(self) -> dict[str, Any] | None:
        return self.session.meta

    @property
    def model_path(self) -> Path | None:
        return self.session.model_path

    @property
    def data(self) -> AudioSet | None:
        return self.session.data

    @property
    def data_path(self) -> Path | None:
        return self.session.data_path

    @property
    def attack(self) -> Attack | None:
        return self.session.attack

    @property
    def unsaved_repair(self) -> str:
        """The accepted repair not exported yet ("" when none): quitting or opening another model asks first."""
        return self.session.unsaved_repair

    # ------------------------------------------------------------------ building
    def _build_logging(self) -> None:
        self.log_panel = LogPanel()
        root = logging.getLogger()
        root.setLevel(min(root.level or logging.INFO, logging.INFO))
        self._file_handler = RotatingFileHandler(log_path(), maxBytes=2_000_000, backupCount=3, encoding="utf-8")
        self._file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        for handler in (self._file_handler, self.log_panel.handler):
            root.addHandler(handler)

    def _build_views(self) -> None:
        self.audio_view = AudioView(None if self.audio.status.output else self.audio.status.reason)
        self.audio_view.play_requested.connect(self.play)
        self.neurons = NeuronView()
        self.neurons.analyse_requested.connect(self.analyse)
        self.analysis_task: Task | None = None
        self._analysis_progress = (0, 0)  # layers analysed, layers asked for
        self.recorder_dialog: RecorderDialog | None = None
        self.tabs = QTabWidget()
        self.tabs.setObjectName("central_tabs")
        self.tabs.addTab(self.audio_view, "Audio")
        self.tabs.addTab(self.neurons, "Neurons")
        self.central = QStackedWidget()
        self.central.setObjectName("central")
        self.central.addWidget(self._build_welcome())
        self.central.addWidget(self.tabs)
        self.setCentralWidget(self.central)
        self.clips = ClipBrowser()
        self.clips.clip_selected.connect(self.show_clip)
        self.attack_panel = AttackPanel()
        self.attack_panel.attack_changed.connect(self.set_attack)
        self.defense_panel = DefensePanel()
        self.defense_panel.run_requested.connect(self.run_defense)
        self.defense_panel.cancel_requested.connect(lambda: self.defense_task and self.defense_task.cancel())
        self.defense_panel.accept_requested.connect(self.accept_defense)
        self.defense_panel.revert_requested.connect(self.revert_defense)
        self.defense_task: Task | None = None
        self.scan_panel = ScanPanel(None if self.audio.status.output else self.audio.status.reason)
        self.scan_panel.scan_requested.connect(self.run_scan)
        self.scan_panel.cancel_requested.connect(lambda: self.scan_task and self.scan_task.cancel())
        self.scan_panel.play_requested.connect(self.play_scan_trigger)
        self.scan_panel.use_requested.connect(self.use_scan_trigger)
        self.scan_task: Task | None = None
        self.demo_task: Task | None = None
        self.import_dialog: ImportDialog | None = None
        self.docks: dict[str, QDockWidget] = {}
        for title, widget, area in (
            ("Clips", self.clips, Qt.DockWidgetArea.LeftDockWidgetArea),
            ("Defense", self.defense_panel, Qt.DockWidgetArea.RightDockWidgetArea),
            ("Attack", self.attack_panel, Qt.DockWidgetArea.RightDockWidgetArea),
            ("Scan", self.scan_panel, Qt.DockWidgetArea.RightDockWidgetArea),
            ("Log", self.log_panel, Qt.DockWidgetArea.LeftDockWidgetArea),
        ):
            dock = QDockWidget(title, self)
            dock.setObjectName(f"dock_{title.lower()}")
            if widget in (
                self.defense_panel,
                self.attack_panel,
                self.scan_panel,
            ):  # tall forms scroll, the window stays
                scroll = QScrollArea()
                scroll.setWidget(widget)
                scroll.setWidgetResizable(True)
                scroll.setFrameShape(QFrame.Shape.NoFrame)
                scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
                scroll.setMinimumWidth(widget.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
                widget = scroll
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            self.docks[title] = dock
        # the Log under the Clips: the Defense dock and the plots keep the window's full height
        self.splitDockWidget(self.docks["Clips"], self.docks["Log"], Qt.Orientation.Vertical)
        self.tabifyDockWidget(self.docks["Defense"], self.docks["Attack"])
        self.tabifyDockWidget(self.docks["Attack"], self.docks["Scan"])
        self.docks["Defense"].raise_()
        self._sized = False
        self.progress = QProgressBar()
        self.progress.setObjectName("progress")
        self.progress.setMaximumWidth(240)
        self.progress.setVisible(False)
        self.status_label = QLabel("Open a model (.safetensors) and a dataset folder to begin.")
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.progress)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancel_task")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_tasks)
        self.statusBar().addPermanentWidget(self.cancel_button)

    def _build_welcome(self) -> QWidget:
        """What the central area shows until a dataset is open: how to begin, and the demo build's progress."""
        page = QWidget()
        page.setObjectName("welcome")
        self.welcome_text = QLabel(
            "<h2>GN-FT Workbench</h2><p>Check a speech-command model for a backdoor and "
            "repair it.</p><p>Open a model (.safetensors or .pt) and its dataset folder "
            "from the File menu or by dropping them here, or open the demo workspace: a "
            "backdoored model and synthetic speech, ready to repair.</p>"
        )
        self.welcome_text.setObjectName("welcome_text")
        self.welcome_text.setWordWrap(True)
        self.welcome_status = QLabel("")
        self.welcome_status.setObjectName("welcome_status")
        self.welcome_status.setWordWrap(True)
        self.welcome_audio = QLabel(self.audio_view.notice.text())
        self.welcome_audio.setObjectName("welcome_audio")
        self.welcome_audio.setWordWrap(True)
        self.welcome_audio.setVisible(bool(self.audio_view.notice.text()))
        self.welcome_progress = QProgressBar()
        self.welcome_progress.setObjectName("welcome_progress")
        self.welcome_progress.setVisible(False)
        buttons = QHBoxLayout()
        self.welcome_buttons = {}
        for key, text, slot in (
            ("demo", "Open the demo", lambda: self.open_demo()),
            ("model", "Open a model…", self._ask_model),
            ("data", "Open a dataset…", self._ask_data),
        ):
            button = QPushButton(text)
            button.setObjectName(f"welcome_{key}")
            button.clicked.connect(lambda _=False, f=slot: f())
            buttons.addWidget(button)
            self.welcome_buttons[key] = button
        buttons.addStretch(1)
        column = QVBoxLayout()
        column.addWidget(self.welcome_text)
        column.addLayout(buttons)
        column.addWidget(self.welcome_audio)
        column.addWidget(self.welcome_status)
        column.addWidget(self.welcome_progress)
        column.addStretch(1)
        box = QWidget()
        box.setLayout(column)
        box.setMaximumWidth(640)
        outer = QHBoxLayout(page)
        outer.addStretch(1)
        outer.addWidget(box, 4)
        outer.addStretch(1)
        return page

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._sized:  # dock sizes take effect once the window has its size
            self._sized = True
            if settings().value("state") is None:
                self._default_dock_sizes()

    def _default_dock_sizes(self) -> None:
        self.resizeDocks([self.docks["Clips"], self.docks["Defense"]], [260, 390], Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["Clips"], self.docks["Log"]], [3, 1], Qt.Orientation.Vertical)

    def keep_on_screen(self) -> None:
        """Shrink and move the window into the screen it is on (a remembered geometry may not fit)."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            return
        available = screen.availableGeometry()
        frame, inner = self.frameGeometry(), self.geometry()
        extra_w, extra_h = frame.width() - inner.width(), frame.height() - inner.height()
        fitted = fit_to_screen(frame, available)
        if fitted != frame:
            self.setGeometry(
                fitted.left() + (inner.left() - frame.left()),
                fitted.top() + (inner.top() - frame.top()),
                fitted.width() - extra_w,
                fitted.height() - extra_h,
            )

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.action_open_model = self._action("Open &Model…", QKeySequence.StandardKey.Open, self._ask_model)
        self.action_open_data = self._action("Open &Dataset…", QKeySequence("Ctrl+D"), self._ask_data)
        self.action_open_trigger = self._action("Open &Trigger Sound…", QKeySequence("Ctrl+T"), self._ask_trigger)
        self.action_export = self._action("&Export Model…", QKeySequence.StandardKey.Save, self._ask_export)
        self.action_quit = self._action("&Quit", QKeySequence.StandardKey.Quit, self.close)
        for action in (self.action_open_model, self.action_open_data, self.action_open_trigger, self.action_export):
            file_menu.addAction(action)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        file_menu.addSeparator()
        file_menu.addAction(self.action_quit)
        play_menu = self.menuBar().addMenu("&Audio")
        play_menu.addAction(self._action("Play &Clean", QKeySequence("Ctrl+1"), lambda: self.play("clean")))
        play_menu.addAction(self._action("Play &Triggered", QKeySequence("Ctrl+2"), lambda: self.play("triggered")))
        play_menu.addAction(self._action("&Stop", QKeySequence("Ctrl+."), self.audio.stop))
        play_menu.addSeparator()
        self.action_record = self._action("&Record Trigger…", QKeySequence("Ctrl+R"), self.open_recorder)
        play_menu.addAction(self.action_record)
        self.view_menu = self.menuBar().addMenu("&View")
        for dock in self.docks.values():
            self.view_menu.addAction(dock.toggleViewAction())
        self.view_menu.addSeparator()
        self.view_menu.addAction(
            self._action("&Audio Tab", QKeySequence("Ctrl+Shift+A"), lambda: self.show_tab(self.audio_view))
        )
        self.view_menu.addAction(
            self._action("&Neurons Tab", QKeySequence("Ctrl+Shift+N"), lambda: self.show_tab(self.neurons))
        )
        self.view_menu.addAction(self._action("&Reset Layout", QKeySequence(), self.reset_layout))
        file_menu.insertAction(
            self.action_open_model, self._action("Open D&emo", QKeySequence("Ctrl+Shift+D"), lambda: self.open_demo())
        )
        self._build_threads_menu(self.menuBar().addMenu("&Settings").addMenu("CPU &Threads"))
        self._default_state = self.saveState()
        self._refresh_recent()

    def _build_threads_menu(self, menu) -> None:
        """Settings > CPU Threads: Automatic (the commands' default: all of this machine's) or a count (1 is
        faster when other work shares the machine); kept in the settings."""
        self.threads_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        choices = ["auto", *(str(n) for n in range(1, available_cpus() + 1))]
        for choice in choices:
            text = f"&Automatic ({default_threads()})" if choice == "auto" else f"&{choice}"
            action = QAction(text, self, checkable=True)
            action.triggered.connect(lambda _checked=False, c=choice: self.set_threads_choice(c))
            group.addAction(action)
            menu.addAction(action)
            self.threads_actions[choice] = action
            if choice == "auto":
                menu.addSeparator()
        saved = str(settings().value("threads", "auto"))
        try:
            resolve_threads(saved)
        except GnftError:
            saved = "auto"
        self.threads_choice = saved if saved in self.threads_actions else "auto"
        self._threads_pending = False
        self.set_threads_choice(self.threads_choice)

    def set_threads_choice(self, choice: str) -> int:
        """Use ``choice`` (``auto`` or a count) torch threads from now on and remember it. While a task
        runs the change waits for it to end (a thread pool is not resized under a running step)."""
        self.threads_choice = choice
        self.threads_actions[choice].setChecked(True)
        settings().setValue("threads", choice)
        threads = resolve_threads(choice)
        if any(t.running for t in self.tasks):
            self._threads_pending = True
        else:
            set_threads(choice)
            self._threads_pending = False
        log.info("CPU threads: %s (%d)", choice, threads)
        return threads

    def show_tab(self, widget: QWidget) -> None:
        """Bring a central tab (Audio, Neurons) to the front, leaving the welcome page if it shows."""
        self.central.setCurrentWidget(self.tabs)
        self.tabs.setCurrentWidget(widget)

    def reset_layout(self) -> None:
        """Every dock back where it starts (View > Reset Layout)."""
        self.restoreState(self._default_state)
        for dock in self.docks.values():
            dock.setVisible(True)
        self.docks["Defense"].raise_()
        self._default_dock_sizes()

    def _action(self, text: str, shortcut: Any, slot) -> QAction:
        action = QAction(text, self)
        action.setShortcut(shortcut)
        action.triggered.connect(lambda _=False: slot())
        self.addAction(action)
        return action

    # ------------------------------------------------------------------ errors, recent files
    def show_error(self, title: str, message: str) -> None:
        """A window-modal error box naming the log file; the workspace is left as it was."""
        log.error("%s: %s", title, message)
        box = QMessageBox(
            QMessageBox.Icon.Critical,
            title,
            f"{message}\n\nDetails are in the log: {log_path()}",
            QMessageBox.StandardButton.Ok,
            self,
        )
        box.setObjectName("error_dialog")
        box.open()
        self.last_error = box
        self.error_shown.emit(message)

    def unexpected_error(self, kind, value, tb) -> None:
        """``sys.excepthook`` of the application: log the traceback, show the dialog, keep running."""
        log.error("unexpected error", exc_info=(kind, value, tb))
        self.show_error("Unexpected error", f"{kind.__name__}: {value}")

    def _remember(self, kind: str, path: Path) -> None:
        state = settings()
        recent = [p for p in (state.value("recent", []) or []) if p != f"{kind}:{path}"]
        state.setValue("recent", [f"{kind}:{path}", *recent][:MAX_RECENT])
        self._refresh_recent()

    def recent_files(self) -> list[str]:
        value = settings().value("recent", []) or []
        return [value] if isinstance(value, str) else list(value)

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for entry in self.recent_files():
            kind, _, path = entry.partition(":")
            action = self.recent_menu.addAction(f"{kind}: {path}")
            action.triggered.connect(
                lambda _=False, k=kind, p=path: self.open_model(p) if k == "model" else self.open_data(p)
            )
        self.recent_menu.setEnabled(bool(self.recent_menu.actions()))

    # ------------------------------------------------------------------ opening
    def _ask_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open model", "", "Checkpoints (*.safetensors);;PyTorch state dicts (*.pt *.pth)"
        )
        if path:
            self.open_model(path)

    def _ask_data(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open dataset folder")
        if path:
            self.open_data(path)

    def _ask_trigger(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open trigger sound", "", f"Audio files ({AUDIO_FILTER});;All files (*)"
        )
        if path:
            self.use_trigger_file(path)

    def open_model(self, path: str | os.PathLike) -> bool:
        """Load a ``.safetensors`` checkpoint; on failure keep the current one and show why.

        A ``.pt``/``.pth`` file opens the import dialog instead (it needs its architecture named).
        """
        path = Path(path)
        if not self.confirm_discard_repair("open another model"):
            return False
        if path.suffix.lower() in (".pt", ".pth"):
            self.import_model(path)
            return False
        try:
            self.session.open_model(path)
        except MismatchError as err:
            self.show_error("Model and dataset do not match", str(err))
            return False
        except GnftError as err:
            self.show_error("Cannot open the model", str(err))
            return False
        return self._model_opened()

    def import_model(self, path: str | os.PathLike) -> ImportDialog:
        """Ask for the architecture, classes and front end of a ``.pt`` state dict, then load it."""
        path = Path(path)
        dialog = ImportDialog(path, self.data.classes if self.data is not None else (), self)
        dialog.imported.connect(lambda model, meta: self._set_model(model, meta, path))
        dialog.open()
        self.import_dialog = dialog
        return dialog

    def _set_model(self, model: torch.nn.Module, meta: dict[str, Any], path: Path) -> bool:
        try:
            self.session.set_model(model, meta, path)
        except MismatchError as err:
            self.show_error("Model and dataset do not match", str(err))
            return False
        return self._model_opened()

    def _model_opened(self) -> bool:
        """Show the session's new model: its layers, its recorded attack, its name in the title."""
        model, meta, path = self.session.model, self.session.meta, self.session.model_path
        self.neurons.set_layers([n for n, _ in analysable_layers(model)])
        self.attack_panel.sample_rate = meta["sample_rate"]
        self.attack_panel.set_attack(self.session.attack)
        self.scan_panel.clear()  # the session forgot the scans of the previous model
        self._scan_availability()
        imported = path.suffix.lower() != ".safetensors"
        self.setWindowTitle(f"GN-FT Workbench - {path.name}" + (" (imported, not saved)" if imported else ""))
        self._remember("model", path)
        log.info(
            "%s model %s (%s, %d classes)",
            "imported" if imported else "opened",
            path,
            meta["architecture"],
            len(meta["classes"]),
        )
        self.model_loaded.emit(str(path))
        self._predict_all()
        return True

    def open_data(self, path: str | os.PathLike) -> Task:
        """Decode a dataset folder in a worker thread; the workspace changes only if it loads."""
        path = Path(path)
        self._busy(f"Loading {path} …")
        session = self.session
        task = self._run(lambda _observer: session.read_data(path), "load-data")
        task.finished.connect(lambda data: self._data_ready(path, data))
        task.failed.connect(lambda message, _details: self._failed("Cannot open the dataset", message))
        task.start()
        return task

    def open_demo(self, rebuild: bool = False) -> Task | None:
        """Open the demo workspace; build it first (in a worker, with progress) if it is not cached."""
        from core.demo import cached_demo, demo_dir, ensure_demo

        if self.demo_task is not None:  # already building: a second click waits for the same build
            return self.demo_task
        cached = None if rebuild else cached_demo(demo_dir())
        if cached is not None:
            self._open_demo(cached)
            return None
        self._busy(
            "Building the demo workspace (once, about half a minute): synthetic speech, then the "
            "backdoored demo model is checked on it …"
        )
        task = self._run(lambda observer: ensure_demo(rebuild=rebuild, observer=observer), "demo")
        self.demo_task = task
        self.welcome_buttons["demo"].setEnabled(False)
        for signal in (task.finished, task.failed, task.cancelled):
            signal.connect(self._demo_task_over)
        task.observer.stepped.connect(self._demo_progress)  # a bound slot: queued to the GUI thread
        task.cancelled.connect(lambda: self._idle("Demo build cancelled; it starts again next time"))
        task.finished.connect(self._open_demo)
        task.failed.connect(lambda message, _details: self._failed("Cannot build the demo", message))
        task.start()
        return task

    def _demo_task_over(self, *_args) -> None:
        self.demo_task = None
        self.welcome_buttons["demo"].setEnabled(True)

    def _demo_progress(self, info) -> None:
        # a plain function connected here ran in the worker thread and raced the progress bar's
        # busy animation (a segmentation fault in the PyInstaller bundle's --demo self-test)
        for bar in (self.progress, self.welcome_progress):
            bar.setRange(0, info.total_steps)
            bar.setValue(info.step)

    def _open_demo(self, demo) -> None:
        self._idle(f"Demo: {demo.folder}")
        if self.open_model(demo.model):
            self.open_data(demo.data)

    def _data_ready(self, path: Path, data: AudioSet) -> None:
        try:
            self.session.set_data(path, data)
        except MismatchError as err:
            self._failed("Model and dataset do not match", str(err))
            return
        self._scan_availability()
        self._idle(f"{path}: {len(data)} clips, {len(data.classes)} classes")
        self.central.setCurrentWidget(self.tabs)
        split_of = ["?"] * len(data)
        for name, idx in data.splits.items():
            for i in idx.tolist():
                split_of[i] = name
        names = [self.clip_name(i) for i in range(len(data))]
        self.clips.set_clips(
            names, split_of, list(data.speakers), [data.classes[i] for i in data.labels.tolist()], list(data.classes)
        )
        self._remember("data", path)
        log.info("opened dataset %s: %d clips", path, len(data))
        self.data_loaded.emit(str(path))
        if len(data):
            self.clips.select(0)  # the first clip is shown at once: nothing to hunt for
        self._predict_all()

    def _predict_all(self) -> None:
        if self.model is None or self.data is None:
            return
        model, data = self.model, self.data  # the model and data of now, whatever opens meanwhile
        self._busy("Predicting every clip …")
        task = self._run(lambda _observer: predict_clips(model, data), "predict")
        task.finished.connect(self._predictions_ready)
        task.failed.connect(lambda message, _details: self._failed("Prediction failed", message))
        task.start()

    def _predictions_ready(self, result) -> None:
        if not self.tasks:
            self._idle(self._ready_text())
        self.clips.set_predictions(*result)
        if self.current_clip is not None:
            self.show_clip(self.current_clip)  # its top-3 now from the current model
        self.predictions_ready.emit()

    def _ready_text(self) -> str:
        """The resting status line: what is open and what to do next."""
        if self.model is None or self.data is None:
            return "Open a model (.safetensors) and a dataset folder to begin."
        name = self.model_path.name if self.model_path else "model"
        text = f"{name} on {self.data_path.name if self.data_path else 'data'}: {len(self.data)} clips."
        if self.unsaved_repair:
            return text + f" The repaired model ({self.unsaved_repair}) is not exported yet: File > Export (Ctrl+S)."
        return text + " Pick a clip to listen, or run a defense."

    # ------------------------------------------------------------------ tasks
    def warm_up(self) -> Task:
        """Import what the engine loads lazily on its first optimizer (torch._dynamo: about 2 s of
        import holding the GIL) in the background right after start, so the first defense run's
        live views do not stall while the worker imports."""

        def work(_observer):
            torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)

        task = self._run(work, "warm-up")
        task.finished.connect(lambda _r: self.warmed_up.emit())
        task.failed.connect(lambda message, _d: log.warning("warm-up failed: %s", message))
        self.cancel_button.setVisible(any(t is not task for t in self.tasks))  # not for this one: nobody started it
        task.start()
        return task

    def _run(self, fn, name: str) -> Task:
        task = Task(fn, name, parent=self)
        self.tasks.append(task)
        task.finished.connect(lambda _r, t=task: self._forget(t))
        task.failed.connect(lambda _m, _d, t=task: self._forget(t))
        task.cancelled.connect(lambda t=task: self._forget(t))
        self.cancel_button.setVisible(True)
        return task

    def _forget(self, task: Task) -> None:
        if task in self.tasks:
            self.tasks.remove(task)
        self.cancel_button.setVisible(bool(self.tasks))
        if self._threads_pending and not self.tasks:
            set_threads(self.threads_choice)
            self._threads_pending = False

    def cancel_tasks(self) -> None:
        """Ask every running task to stop at its next step (the workspace stays as it was)."""
        for task in list(self.tasks):
            task.cancel()

    def _busy(self, text: str) -> None:
        for label in (self.status_label, self.welcome_status):
            label.setText(text)
        for bar in (self.progress, self.welcome_progress):
            bar.setRange(0, 0)
            bar.setVisible(True)

    def _idle(self, text: str) -> None:
        for label in (self.status_label, self.welcome_status):
            label.setText(text)
        for bar in (self.progress, self.welcome_progress):
            bar.setVisible(False)

    def _failed(self, title: str, message: str) -> None:
        self._idle(title)
        self.show_error(title, message)

    # ------------------------------------------------------------------ clip and attack
    def set_attack(self, attack: Attack | None) -> None:
        self.session.set_attack(attack)
        if self.current_clip is not None:
            self.show_clip(self.current_clip)

    def clip_name(self, index: int) -> str:
        """How a clip is named on screen: its file's name, else its index."""
        files = getattr(self.data, "files", None)
        return Path(files[index]).name if files else str(index)

    def show_clip(self, index: int) -> None:
        if self.data is None:
            return
        self.current_clip = index
        wave = self.data.waves[index]
        rate = self.data.sample_rate
        label = self.data.classes[int(self.data.labels[index])]
        self.scan_panel.set_clip(f"{self.clip_name(index)} (label {label})")
        self.audio_view.show_clip("clean", wave.numpy(), rate, self.session.top3(wave), f"clean, label {label}")
        if self.attack is None:
            self.audio_view.clear_side("triggered", "no attack chosen")
        else:
            try:
                triggered = self.attack.apply_test(wave.view(1, -1), rate)[0]
            except GnftError as err:
                self.audio_view.clear_side("triggered", f"trigger not available: {err}")
            else:
                target = (
                    self.data.classes[self.attack.params.target]
                    if self.attack.params.target < len(self.data.classes)
                    else str(self.attack.params.target)
                )
                self.audio_view.show_clip(
                    "triggered",
                    triggered.numpy(),
                    rate,
                    self.session.top3(triggered),
                    f"triggered ({self.attack.name}), target {target}",
                )
        self.clip_shown.emit(index)

    def play(self, side: str) -> bool:
        wave = self.audio_view.waves.get(side)
        if wave is None or self.data is None:
            return False
        return self.audio.play(wave, self.data.sample_rate)

    def open_recorder(self) -> RecorderDialog:
        """The trigger recorder; a saved take becomes the current (custom) attack at once."""
        rate = self.data.sample_rate if self.data is not None else (self.meta or {}).get("sample_rate", 16000)
        dialog = RecorderDialog(self.audio, rate, self)
        dialog.setObjectName("recorder_dialog")
        dialog.saved.connect(self.use_trigger_file)
        dialog.show()
        self.recorder_dialog = dialog
        return dialog

    def use_trigger_file(self, path: str | os.PathLike) -> bool:
        """Make an audio file (a recorded take, or any WAV, FLAC, OGG, AIFF...) the custom attack's trigger."""
        rate = self.data.sample_rate if self.data is not None else (self.meta or {}).get("sample_rate", 16000)
        try:
            attack = get_attack("custom", sample_rate=rate, file=str(path))
        except GnftError as err:
            self.show_error("Cannot use the trigger sound", str(err))
            return False
        self.attack_panel.set_attack(attack)
        log.info("trigger sound %s is now the custom attack", path)
        return True

    # ------------------------------------------------------------------ defenses
    def run_defense(self, name: str, config) -> Task | None:
        """Run a defense on the current model in a worker; the model is untouched until Accept.

        With an attack set, the Neurons view gets exact CLC/BLC of its chosen layer before
        and after the run (if asked) and the first-order estimate at every evaluation.
        """
        if self.model is None or self.data is None:
            self.show_error("Nothing to defend", "Open a model and its dataset first.")
            return None
        if self.defense_task is not None:
            return None
        if self.analysis_task is not None or self.scan_task is not None:
            what = "An analysis" if self.analysis_task is not None else "A scan"
            self._idle(f"{what} is running: wait for it or cancel it first")
            return None
        session, base = self.session, self.defense_panel.base_preset
        preset = preset_record(name, config, base=base)
        layer = self.neurons.layer.currentText()
        exact = self.neurons.exact_around_runs.isChecked()
        data, attack = session.data, session.attack
        scan_config = None
        if config.unlearns():  # the trigger to unlearn: this model's kept scan, or a scan first
            try:
                dock = self.scan_panel.config()  # its clean share capped at the repair's: the repair has no more clips
                share = min(dock.clean_ratio, config.clean_ratio)
                scan_config = dataclasses.replace(dock, seed=config.seed, device=config.device, clean_ratio=share)
                check_unlearn_scan(scan_config, "the Scan dock's domains")
                session.scan_reference(scan_config, f"the Scan dock's {REFERENCE_LABEL}")
            except Exception as err:
                self.show_error("Scan settings", f"The repair scans for the trigger to unlearn first: {err}")
                return None

        def work(observer) -> RepairResult:
            watcher = ZoneWatcher(observer, data, attack, layer, exact)
            return session.run_repair(
                name, config, base_preset=base, observer=observer, watcher=watcher, scan_config=scan_config
            )

        task = Task(work, f"defense-{name}", wants_grad_norms=True, parent=self)
        self.tasks.append(task)
        self.defense_task = task
        panel = self.defense_panel
        panel.scan_domains = scan_config.domain_list() if scan_config is not None else []
        panel.start({})
        self.neurons.begin_run()
        task.observer.stepped.connect(panel.on_step)
        task.observer.stepped.connect(self.neurons.on_step)
        task.observer.neurons.connect(self.neurons.on_neurons)
        task.observer.evaluated.connect(self._defense_evaluated)  # a bound slot: queued to the GUI thread
        task.finished.connect(self._defense_done)
        task.failed.connect(self._defense_failed)
        used = PRESETS[preset["name"]].title if preset["name"] in PRESETS else "custom settings"
        self._busy(f"Running {DEFENSE_TITLES.get(name, name)} ({used}) …")
        self.cancel_button.setVisible(True)
        task.start()
        log.info("running %s with %s", name, config)
        return task

    def _defense_evaluated(self, info: EvalInfo) -> None:
        if info.phase == "before":
            self.defense_panel.start(_metrics(info))
        else:
            self.defense_panel.on_eval(info)

    def _defense_done(self, result: RepairResult) -> None:
        self._forget(self.defense_task)
        self.defense_task = None
        scanned = result.scan is not None and not result.cancelled
        if not self.session.finish_repair(result):
            self._idle(f"{result.defense} cancelled: the model is as it was")
            self.defense_panel.set_state("idle")
            self.defense_panel.eta.setText("Cancelled: the model is as it was.")  # not the last step's line
            return
        before, after = result.before, result.after
        text = (
            f"{DEFENSE_TITLES.get(result.defense, result.defense)} finished: CA {percent(before['clean_accuracy'])} -> "
            f"{percent(after['clean_accuracy'])}"
        )
        if after.get("attack_success_rate") is not None:
            text += f", ASR {percent(before['attack_success_rate'])} -> {percent(after['attack_success_rate'])}"
        self._idle(text + ". Accept or Revert (Defense dock).")
        self.defense_panel.finish(before, after, result.seconds, result.defense, result.findings)
        if scanned:  # the repair scanned for the trigger it unlearned: the Scan dock shows that scan
            self._show_scan()

    def analyse(self, layers: list[str]) -> Task | None:
        """Gradient norms (and, with an attack set, exact CLC/BLC and zones) of the loaded model's
        ``layers``, in a worker on a copy of the model; each finished layer reaches the Neurons view."""
        if self.model is None or self.data is None:
            self.show_error("Nothing to analyse", "Open a model and its dataset first.")
            return None
        if self.analysis_task is not None or self.defense_task is not None:
            self._idle("Busy: wait for the running defense or analysis, or cancel it")
            return None
        model, data = copy.deepcopy(self.model), self.data
        attack = self.attack
        if attack is None:
            log.info("analysis without an attack: gradient norms only (CLC/BLC need a trigger)")

        def work(observer):
            return analyse_model(model, data, attack, list(layers), observer=observer)

        task = self._run(work, "analysis")
        self.analysis_task = task
        self._analysis_progress = (0, len(layers))
        task.observer.neurons.connect(self._analysed_layer)  # a bound slot: queued to the GUI thread
        task.finished.connect(
            lambda result: (
                self._analysis_over(f"Analysis of {len(layers)} layer(s) done"),
                self.analysis_done.emit(result),
            )
        )
        task.failed.connect(
            lambda message, _d: (
                self._analysis_over("The analysis failed"),
                self.show_error("The analysis failed", message),
            )
        )
        task.cancelled.connect(lambda: self._analysis_over("Analysis cancelled"))
        self._busy(f"Analysing {len(layers)} layer(s) …")
        self.progress.setRange(0, len(layers))
        self.progress.setValue(0)
        self.neurons.analyse_button.setEnabled(False)
        self.tabs.setCurrentWidget(self.neurons)
        task.start()
        return task

    def _analysed_layer(self, stats: NeuronStats) -> None:
        done, total = self._analysis_progress
        self._analysis_progress = (done + 1, total)
        self.progress.setRange(0, total)
        self.progress.setValue(done + 1)
        self.status_label.setText(f"Analysed {stats.layer} ({done + 1}/{total})")
        self.neurons.on_neurons(stats)

    def _analysis_over(self, text: str) -> None:
        self.analysis_task = None
        self.neurons.analyse_button.setEnabled(True)
        self._idle(text)

    def _defense_failed(self, message: str, _details: str) -> None:
        self._forget(self.defense_task)
        self.defense_task = None
        self.defense_panel.set_state("idle")
        self._failed("The defense failed", message)

    def accept_defense(self) -> None:
        """The defended model becomes the current one, its run appended to the checkpoint history."""
        if self.session.pending is None:
            return
        result = self.session.accept()
        summary = self.session.unsaved_repair
        self.defense_panel.set_state("idle")
        self.defense_panel.eta.setText(
            f"Accepted: the repaired model ({summary}) is the current one. File > Export saves it."
        )
        log.info("accepted %s: %s", result.defense, summary)
        self._show_scan()  # the scan shown is now of the model before the repair: it says so
        self._predict_all()

    def revert_defense(self) -> None:
        self.session.revert()
        self.defense_panel.set_state("idle")
        self.defense_panel.eta.setText("Reverted: the model is as it was before the run.")
        self._idle("Reverted: the model is as it was before the defense")

    # ------------------------------------------------------------------ scan
    def _scan_availability(self) -> None:
        """The Scan button needs a model and its data; its tooltip says what is missing."""
        model, data = self.model is not None, self.data is not None
        missing = (
            ""
            if model and data
            else "Open a model and its dataset first (File menu)"
            if not model and not data
            else "Open the model's dataset first (File > Open Dataset)"
            if model
            else "Open a model first (File > Open Model)"
        )
        self.scan_panel.set_available(model and data, missing)

    def run_scan(self, config: ScanConfig | None = None) -> Task | None:
        """Scan the current model for a backdoor (:meth:`core.session.Session.run_scan`) in a worker; the
        session keeps the result when it ends, a cancelled scan leaves everything as it was."""
        if self.model is None or self.data is None:
            self.show_error("Nothing to scan", "Open a model and its dataset first.")
            return None
        if self.scan_task is not None:
            return None
        if self.defense_task is not None or self.analysis_task is not None:
            self._idle("Busy: wait for the running defense or analysis, or cancel it, then scan")
            return None
        config = config or self.scan_panel.config()
        session = self.session
        try:  # a clean reference that does not fit the model: said under the form, before any work
            session.scan_reference(config, REFERENCE_LABEL)
        except ConfigError as err:
            self.scan_panel.show_error(str(err))
            return None
        task = self._run(lambda observer: session.run_scan(config, observer), "scan")
        self.scan_task = task
        self.scan_panel.start(config)
        task.observer.stepped.connect(self.scan_panel.on_step)  # a bound slot: queued to the GUI thread
        task.finished.connect(self._scan_done)
        task.failed.connect(self._scan_failed)
        task.cancelled.connect(self._scan_cancelled)
        self._busy(f"Scanning {self.model_path.name if self.model_path else 'the model'} for a backdoor …")
        task.start()
        log.info("scanning with %s", config)
        return task

    def _scan_done(self, record: ScanRecord) -> None:
        self.scan_task = None
        if not self.session.finish_scan(record):
            self.scan_panel.stopped("The model changed during the scan: its result was dropped; scan again.")
            self._idle("Scan dropped: the model changed meanwhile")
            self.scan_finished.emit(None)
            return
        self._show_scan()
        r = record.result
        verdict = f"backdoored, suspected target {r.suspected_target}" if r.backdoored else "no backdoor found"
        self._idle(f"Scan finished in {r.seconds:.1f} s: {verdict}")
        log.info("scan: %s (confidence %s)", verdict, r.confidence)
        self.docks["Scan"].raise_()
        self.scan_finished.emit(record)

    def _show_scan(self) -> None:
        record = self.session.scan
        if record is not None:
            current = record.version == self.session.model_version
            self.scan_panel.show_record(record, self.session.scan_comparison(), current)

    def _scan_failed(self, message: str, _details: str) -> None:
        self.scan_task = None
        self.scan_panel.stopped("The scan failed; the last result is as it was.")
        self._failed("The scan failed", message)
        self.scan_finished.emit(None)

    def _scan_cancelled(self) -> None:
        self.scan_task = None
        self.scan_panel.stopped("Scan cancelled: the last result is as it was.")
        self._idle("Scan cancelled: nothing changed")
        self.scan_finished.emit(None)

    def play_scan_trigger(self, kind: str, class_index: int) -> bool:
        """Play the last scan's trigger for ``class_index``: alone (``trigger``) or added to the selected
        clip (``mixed``, clamped to [-1, 1]), through the application's audio output."""
        try:
            wave = self.session.scan_trigger(class_index)
        except GnftError as err:
            self.show_error("No trigger to play", str(err))
            return False
        rate = self.session.scan.result.sample_rate
        if kind == "mixed":
            if self.data is None or self.current_clip is None:
                self._idle("Select a clip in the Clips dock to hear the trigger on it")
                return False
            wave = mix_trigger(self.data.waves[self.current_clip], wave)
        played = self.audio.play(wave.numpy(), rate)
        if not played:
            self._idle(f"Audio unavailable: {self.audio.status.reason}")
        return played

    def use_scan_trigger(self, class_index: int) -> bool:
        """Make the last scan's trigger for ``class_index`` the attack (a custom trigger file in the
        triggers folder, the class as target): the Attack dock, ASR, neurons and repairs follow it."""
        try:
            attack = self.session.use_scan_trigger(class_index, triggers_dir())
        except (GnftError, OSError) as err:
            self.show_error("Cannot use the trigger", str(err))
            return False
        self.attack_panel.set_attack(attack)  # shows it and sets it again (the same attack)
        name = self.session.scan.result.classes[class_index]
        self._idle(f"The scan's trigger for \u201c{name}\u201d is now the attack (target {name})")
        log.info("scan trigger of class %s is now the custom attack (%s)", name, attack.params.file)
        return True

    # ------------------------------------------------------------------ export
    def suggested_export_path(self) -> Path:
        """Where Export proposes to write: the last export folder (else the home folder), and the
        model's name with ``_repaired`` when it holds an accepted repair."""
        folder = settings().value("export_dir") or ""
        folder = Path(folder) if folder and Path(folder).is_dir() else Path.home()
        return folder / self.session.suggested_export_name()

    def _ask_export(self) -> None:
        if self.model is None:
            self.show_error("Nothing to export", "Open a model first.")
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Export model", str(self.suggested_export_path()), "Checkpoints (*.safetensors)"
        )
        if not path:
            return
        if self.session.is_input(path):
            answer = QMessageBox.question(
                self, "Overwrite the input?", f"{Path(path).name} is the file the model was opened from. Overwrite it?"
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
            self.export_model(path, overwrite_input=True)
        else:
            self.export_model(path)

    def export_model(self, path: str | os.PathLike, overwrite_input: bool = False) -> Path | None:
        """Export the session's model (:meth:`core.session.Session.export`: the checkpoint with a JSON +
        Markdown report beside it); say so in a notice that stays until dismissed."""
        if self.model is None:
            self.show_error("Nothing to export", "Open a model first.")
            return None
        try:
            path = self.session.export(path, overwrite_input=overwrite_input)
        except (GnftError, OSError) as err:
            refused = not overwrite_input and self.session.is_input(path)
            self.show_error("Export refused" if refused else "Export failed", str(err))
            return None
        log.info("exported %s", path)
        settings().setValue("export_dir", str(path.parent))
        self._remember("model", path)
        self._idle(f"Exported {path.name} to {path.parent} (with {path.stem}.json and {path.stem}.md)")
        notice = QMessageBox(
            QMessageBox.Icon.Information,
            "Model exported",
            f"Saved the model to\n{path}\n\nwith a report beside it ({path.stem}.json, {path.stem}.md).",
            QMessageBox.StandardButton.Ok,
            self,
        )
        notice.setObjectName("export_notice")
        notice.open()
        self.last_notice = notice
        return path

    # ------------------------------------------------------------------ drag and drop, closing
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        for url in event.mimeData().urls():
            self.open_path(url.toLocalFile())

    def open_path(self, path: str) -> None:
        """What a dropped file or folder does: a folder is a dataset, a checkpoint file a model, and an
        audio file (any format soundfile reads, recognised by content) the custom attack's trigger."""
        p = Path(path)
        if p.is_dir():
            self.open_data(p)
        elif p.suffix.lower() in (".safetensors", ".pt", ".pth"):
            self.open_model(p)
        elif p.suffix.lower() in AUDIO_SUFFIXES or is_audio_file(p):
            self.use_trigger_file(p)
        else:
            self.show_error(
                "Cannot open",
                f"{p} is neither a dataset folder nor a checkpoint (.safetensors, .pt) nor an audio file "
                "(WAV, FLAC, OGG, AIFF, ...)",
            )

    def shutdown(self) -> None:
        """Stop background work and sound (on close, and when the application quits)."""
        for task in list(self.tasks):
            task.stop()
        self.audio.stop()

    def confirm_discard_repair(self, doing: str) -> bool:
        """Before the current model is dropped (quit, open another): with an accepted repair not yet
        exported, ask to export it, discard it or stay. True when it is fine to go on."""
        if not self.unsaved_repair:
            return True
        answer = QMessageBox.question(
            self,
            "Export the repaired model?",
            f"The repaired model ({self.unsaved_repair}) has not been exported. Export it before you {doing}?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Save,
        )
        if answer == QMessageBox.StandardButton.Save:
            self._ask_export()
            return not self.unsaved_repair
        if answer == QMessageBox.StandardButton.Discard:
            log.info("repaired model discarded unexported (%s)", doing)
            self.session.unsaved_repair = ""
            return True
        return False

    def closeEvent(self, event) -> None:
        if not self.confirm_discard_repair("quit"):
            event.ignore()
            return
        self.shutdown()
        state = settings()
        state.setValue("geometry", self.saveGeometry())
        state.setValue("state", self.saveState())
        root = logging.getLogger()
        for handler in (self._file_handler, self.log_panel.handler):
            root.removeHandler(handler)
        self._file_handler.close()
        super().closeEvent(event)


def _metrics(info: EvalInfo) -> dict[str, float | None]:
    return {
        "clean_accuracy": info.clean_accuracy,
        "attack_success_rate": info.attack_success_rate,
        "robust_accuracy": info.robust_accuracy,
    }
