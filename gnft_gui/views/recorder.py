"""Record a custom trigger with the microphone: device choice, live level, N seconds, trim, play, save.

PortAudio's callback only copies blocks into a queue (gnft_gui.audio_io.Recorder); a QTimer in
the GUI thread drains it every 50 ms, updates the level meter and stops after the requested
length. The take is saved as a 16-bit WAV in the user data folder (``$GNFT_DATA_DIR`` overrides)
and can be used at once as the ``custom`` attack's trigger.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from core.audio import write_wav
from gnft_gui.audio_io import AudioIO, Recorder, level_db

__all__ = ["RecorderDialog", "triggers_dir"]


def triggers_dir() -> Path:
    """Where recorded triggers are kept (``$GNFT_DATA_DIR/triggers`` or the user data folder)."""
    base = os.environ.get("GNFT_DATA_DIR")
    if not base:
        from platformdirs import user_data_dir

        base = user_data_dir("gnft-workbench", appauthor=False)
    folder = Path(base) / "triggers"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def input_devices() -> list[tuple[str, int | None]]:
    """(label, PortAudio index) of every input device; the default first (index None)."""
    out: list[tuple[str, int | None]] = [("default input", None)]
    try:
        import sounddevice as sd

        for i, dev in enumerate(sd.query_devices()):
            if dev["max_input_channels"] > 0:
                out.append((f"{i}: {dev['name']}", i))
    except Exception:  # no PortAudio: the dialog says so instead
        pass
    return out


class RecorderDialog(QDialog):
    """Emits ``recorded(np.ndarray)`` when a take ends and ``saved(str path)`` when it is written."""

    recorded = Signal(object)
    saved = Signal(str)

    def __init__(self, audio: AudioIO, sample_rate: int = 16000, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Record a trigger")
        self.audio, self.sample_rate = audio, sample_rate
        self.take: np.ndarray | None = None
        self.recorder: Recorder | None = None
        self._chunks: list[np.ndarray] = []
        self._started = 0.0
        self.device = QComboBox()
        self.device.setObjectName("input_device")
        for label, index in input_devices():
            self.device.addItem(label, index)
        self.seconds = QDoubleSpinBox()
        self.seconds.setObjectName("record_seconds")
        self.seconds.setRange(0.05, 10.0)
        self.seconds.setValue(1.0)
        self.seconds.setSuffix(" s")
        self.trim_start, self.trim_end = QDoubleSpinBox(), QDoubleSpinBox()
        for box, name in ((self.trim_start, "trim_start"), (self.trim_end, "trim_end")):
            box.setObjectName(name)
            box.setRange(0.0, 10.0)
            box.setSingleStep(0.01)
            box.setSuffix(" s")
        self.level = QProgressBar()
        self.level.setObjectName("level_meter")
        self.level.setRange(-60, 0)
        self.level.setValue(-60)
        self.level.setFormat("%v dBFS")
        self.record_button = QPushButton("Record")
        self.record_button.setObjectName("record")
        self.play_button = QPushButton("Play")
        self.play_button.setObjectName("play_take")
        self.save_button = QPushButton("Save and use as trigger")
        self.save_button.setObjectName("save_take")
        self.status = QLabel("")
        self.status.setObjectName("recorder_status")
        self.status.setWordWrap(True)
        form = QFormLayout()
        form.addRow("input", self.device)
        form.addRow("length", self.seconds)
        form.addRow("trim start", self.trim_start)
        form.addRow("trim end", self.trim_end)
        form.addRow("level", self.level)
        buttons = QHBoxLayout()
        for b in (self.record_button, self.play_button, self.save_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        self.timer = QTimer(self)
        self.timer.setInterval(50)
        self.timer.timeout.connect(self._drain)
        self.record_button.clicked.connect(self.start_recording)
        self.play_button.clicked.connect(self.play_take)
        self.save_button.clicked.connect(lambda: self.save())
        self.play_button.setEnabled(False)
        self.save_button.setEnabled(False)
        if not audio.status.input:
            self.record_button.setEnabled(False)
            self.status.setText(f"Recording unavailable: {audio.status.reason}")

    def start_recording(self) -> None:
        self._chunks, self.take = [], None
        self.recorder = Recorder(self.sample_rate, self.device.currentData())
        try:
            self.recorder.start()
        except Exception as err:  # a device that vanished or refuses the rate
            self.status.setText(f"Cannot record: {err}")
            self.recorder = None
            return
        self._started = time.monotonic()
        self.record_button.setEnabled(False)
        self.status.setText(f"Recording {self.seconds.value():.2f} s …")
        self.timer.start()

    def _drain(self) -> None:
        if self.recorder is None:
            return
        for block in self.recorder.drain():
            self._chunks.append(block)
            finite = block[np.isfinite(block)]
            self.level.setValue(int(max(-60.0, min(0.0, level_db(finite)))))
        wanted = int(round(self.seconds.value() * self.sample_rate))
        have = sum(c.size for c in self._chunks)
        if have >= wanted or time.monotonic() - self._started > self.seconds.value() + 5.0:
            self.timer.stop()
            self.recorder.stop()
            self._chunks.extend(self.recorder.drain())
            self.recorder = None
            take = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
            if take.size < wanted:
                self.status.setText(f"The device delivered {take.size / self.sample_rate:.2f} s of "
                                    f"{self.seconds.value():.2f} s; recording stopped")
                self.record_button.setEnabled(True)
                return
            take = take[:wanted].astype(np.float32)
            bad = int((~np.isfinite(take)).sum())
            if bad:  # some devices (ALSA's null capture among them) deliver garbage: never let it reach a WAV
                take = np.nan_to_num(take, nan=0.0, posinf=0.0, neginf=0.0)
            self.take = np.clip(take, -1.0, 1.0)
            self.trim_start.setValue(0.0)
            self.trim_end.setValue(0.0)
            self.record_button.setEnabled(True)
            self.play_button.setEnabled(self.audio.status.output)
            self.save_button.setEnabled(True)
            self.status.setText(f"Recorded {self.take.size / self.sample_rate:.2f} s, peak "
                                f"{level_db(np.abs(self.take).max(keepdims=True)):.1f} dBFS"
                                + (f"; the device delivered {bad} invalid samples, set to silence" if bad else ""))
            self.recorded.emit(self.take)

    def trimmed(self) -> np.ndarray:
        """The take without ``trim start`` seconds at the front and ``trim end`` at the back."""
        if self.take is None:
            return np.zeros(0, np.float32)
        a = int(round(self.trim_start.value() * self.sample_rate))
        b = self.take.size - int(round(self.trim_end.value() * self.sample_rate))
        return self.take[a:max(a, b)]

    def play_take(self) -> bool:
        clip = self.trimmed()
        return bool(clip.size) and self.audio.play(clip, self.sample_rate)

    def save(self, path: str | os.PathLike | None = None) -> Path | None:
        clip = self.trimmed()
        if clip.size == 0:
            self.status.setText("Nothing to save: record first (or trim less)")
            return None
        path = Path(path) if path else triggers_dir() / time.strftime("trigger-%Y%m%d-%H%M%S.wav")
        write_wav(path, clip, self.sample_rate)
        self.status.setText(f"Saved {path}")
        self.saved.emit(str(path))
        return path

    def closeEvent(self, event) -> None:
        self.timer.stop()
        if self.recorder is not None:
            self.recorder.stop()
        super().closeEvent(event)
