"""Record a custom trigger with the microphone: device choice, live level, N seconds, trim, play, save.

PortAudio's callback only copies blocks into a queue (gnft_gui.audio_io.Recorder); a QTimer in
the GUI thread drains it every 50 ms, updates the level meter and stops after the requested
length. The take is saved as a 16-bit WAV in the user data folder (``$GNFT_DATA_DIR`` overrides)
and can be used at once as the ``custom`` attack's trigger.

Every take (and every block the live meter shows) is judged by :func:`assess_take`, a pure function
of the samples: a real recording, silence, invalid input (NaN/inf or garbage far beyond full scale,
as ALSA's null capture device can deliver) or nothing at all. Only a real recording can be saved.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
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
from gnft_gui.audio_io import AudioIO, Recorder

__all__ = [
    "RecorderDialog",
    "TakeAssessment",
    "assess_take",
    "meter_reading",
    "triggers_dir",
    "format_db",
    "SILENCE_PEAK_DBFS",
    "SILENCE_RMS_DBFS",
    "INVALID_ABOVE",
    "MAX_INVALID_FRACTION",
    "GARBAGE_BELOW",
    "MAX_GARBAGE_FRACTION",
]

# Peak below -60 dBFS (1/1000 of full scale) is under the noise a live microphone picks up in a quiet room.
SILENCE_PEAK_DBFS = -60.0
# RMS below -70 dBFS over the take is no more energy than a 1 ms sound at -40 dBFS per second: at most a click.
SILENCE_RMS_DBFS = -70.0
# A float stream is normalised to [-1, 1]; beyond +6 dBFS a value is uninitialised memory, not an overload.
INVALID_ABOVE = 2.0
# The live meter's scale starts here; anything quieter reads as "silent" (or "-inf" for zeros).
METER_FLOOR_DBFS = -60.0
# A working device delivers no NaN/inf at all; more than 1 sample in 1000 means it is not delivering audio.
MAX_INVALID_FRACTION = 0.001
# Non-zero values under a 32-bit converter's smallest step (-193 dBFS) come from no ADC; ALSA's null device
# hands over uninitialised memory full of them (21-50 % of its takes measured), between plausible-looking values.
GARBAGE_BELOW = 2.0**-32
MAX_GARBAGE_FRACTION = 0.1
# Levels under this are shown as "< -120 dBFS": far below any converter's noise, the digits mean nothing.
SHOWN_FLOOR_DBFS = -120.0


def _db(value: float) -> float:
    return 20.0 * math.log10(value) if value > 0.0 else -math.inf


def format_db(value: float) -> str:
    """``-20.0``, ``< -120`` or ``-inf`` (the level of all-zero samples), without a unit."""
    if value == -math.inf:
        return "-inf"
    return f"< {SHOWN_FLOOR_DBFS:g}" if value < SHOWN_FLOOR_DBFS else f"{value:.1f}"


@dataclass(frozen=True)
class TakeAssessment:
    """What a take is: ``kind`` 'ok' (a real recording), 'silent', 'invalid' or 'empty'.

    ``peak_dbfs`` and ``rms_dbfs`` are measured on the valid samples only (``-inf`` when they are all
    zero or there are none); ``invalid`` counts NaN/inf and values beyond ``INVALID_ABOVE`` (and, in a
    take judged to be uninitialised memory, the values under ``GARBAGE_BELOW``); ``nonfinite`` NaN/inf only.
    """

    kind: str
    samples: int
    invalid: int
    nonfinite: int
    peak_dbfs: float
    rms_dbfs: float
    duration_s: float
    message: str

    @property
    def usable(self) -> bool:
        return self.kind == "ok"


def assess_take(samples: np.ndarray, sample_rate: int) -> TakeAssessment:
    """Judge a mono take: real recording, silence, invalid input or empty (see the module constants)."""
    with np.errstate(invalid="ignore", over="ignore"):  # a device's garbage (NaN payloads) is judged below
        x = np.asarray(samples, dtype=np.float64).reshape(-1)
    n = int(x.size)
    duration = n / float(sample_rate)
    if n == 0:
        return TakeAssessment(
            "empty", 0, 0, 0, -math.inf, -math.inf, 0.0, "Nothing was recorded: the device delivered no samples"
        )
    finite = np.isfinite(x)
    magnitude = np.abs(np.where(finite, x, 0.0))
    valid = finite & (magnitude <= INVALID_ABOVE)
    nonfinite, invalid = int(n - finite.sum()), int(n - valid.sum())
    tiny = int(((magnitude > 0.0) & (magnitude < GARBAGE_BELOW)).sum())
    good = x[valid]
    peak = _db(float(np.abs(good).max())) if good.size else -math.inf
    rms = _db(float(np.sqrt(np.mean(np.square(good))))) if good.size else -math.inf
    levels = f"peak {format_db(peak)} dBFS, RMS {format_db(rms)} dBFS"
    garbage = tiny > MAX_GARBAGE_FRACTION * n
    if invalid > MAX_INVALID_FRACTION * n or garbage:
        beyond = invalid - nonfinite
        what = [
            label
            for count, label in (
                (nonfinite, "NaN/inf"),
                (beyond, "far beyond full scale"),
                (tiny if garbage else 0, "impossibly tiny"),
            )
            if count
        ]
        invalid += tiny if garbage else 0
        return TakeAssessment(
            "invalid",
            n,
            invalid,
            nonfinite,
            peak,
            rms,
            duration,
            f"{invalid} of {n} samples were invalid ({', '.join(what)}): the device did not "
            "deliver audio; choose another input device",
        )
    note = f"; {invalid} invalid samples were set to silence" if invalid else ""
    if peak < SILENCE_PEAK_DBFS or rms < SILENCE_RMS_DBFS:
        if peak == -math.inf:
            level = "every sample is zero"
        elif peak < SILENCE_PEAK_DBFS:
            level = f"{levels}: the peak is under {SILENCE_PEAK_DBFS:g} dBFS"
        else:
            level = f"{levels}: the RMS is under {SILENCE_RMS_DBFS:g} dBFS"
        return TakeAssessment(
            "silent",
            n,
            invalid,
            nonfinite,
            peak,
            rms,
            duration,
            f"The input gave only silence ({level}): check the microphone / input device{note}",
        )
    return TakeAssessment(
        "ok", n, invalid, nonfinite, peak, rms, duration, f"Recorded {duration:.2f} s: {levels}{note}"
    )


def meter_reading(samples: np.ndarray, sample_rate: int) -> tuple[float, str]:
    """(peak dBFS for the bar, its text) of the latest samples: the true peak, 'silent' or 'invalid'."""
    a = assess_take(samples, sample_rate)
    if a.kind == "empty":
        return -math.inf, "no samples"
    if a.kind == "invalid":
        return -math.inf, "invalid input (NaN/inf)" if a.invalid == a.nonfinite else "invalid input"
    if a.peak_dbfs < SILENCE_PEAK_DBFS:
        return a.peak_dbfs, f"silent: peak below {SILENCE_PEAK_DBFS:g} dBFS"
    return a.peak_dbfs, f"peak {a.peak_dbfs:.1f} dBFS"


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
        self.take: np.ndarray | None = None  # finite, clipped: what is played and saved
        self._raw: np.ndarray | None = None  # as the device delivered it: what is assessed
        self.assessment: TakeAssessment | None = None  # of the (trimmed) take
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
        self.level.setRange(int(METER_FLOOR_DBFS * 10), 0)  # tenths of a dB
        self.level.setMinimumWidth(260)
        self._show_level(-math.inf, "not recording")
        self.record_button = QPushButton("Record")
        self.record_button.setObjectName("record")
        self.play_button = QPushButton("Play")
        self.play_button.setObjectName("play_take")
        self.save_button = QPushButton("Save and use as trigger")
        self.save_button.setObjectName("save_take")
        self.save_button.setToolTip("Record a take first")
        self.status = QLabel("")
        self.status.setObjectName("recorder_status")
        self.status.setWordWrap(True)
        self.status.setMinimumHeight(2 * self.status.fontMetrics().lineSpacing())  # a reason fits without a jump
        self.setMinimumWidth(480)  # the verdicts read in one or two lines, not three
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
        self.trim_start.valueChanged.connect(self._assess)
        self.trim_end.valueChanged.connect(self._assess)
        self.play_button.setEnabled(False)
        self.save_button.setEnabled(False)
        if not audio.status.input:
            self.record_button.setEnabled(False)
            self.status.setText(f"Recording unavailable: {audio.status.reason}")

    def _show_level(self, peak_dbfs: float, text: str) -> None:
        value = METER_FLOOR_DBFS if peak_dbfs < METER_FLOOR_DBFS else min(0.0, peak_dbfs)
        self.level.setValue(int(round(value * 10)))
        self.level.setFormat(text.replace("%", "%%"))
        self.level.setToolTip(text)

    def start_recording(self) -> None:
        self._chunks, self.take, self._raw, self.assessment = [], None, None, None
        self.save_button.setEnabled(False)
        self.play_button.setEnabled(False)
        self.save_button.setToolTip("Recording…")
        self.recorder = Recorder(self.sample_rate, self.device.currentData())
        try:
            self.recorder.start()
        except Exception as err:  # a device that vanished or refuses the rate
            self.status.setText(f"Cannot record: {err}")
            self.recorder = None
            return
        self._started = time.monotonic()
        self.record_button.setEnabled(False)
        font = self.status.font()
        font.setBold(False)
        self.status.setFont(font)
        self.status.setText(f"Recording {self.seconds.value():.2f} s …")
        self.timer.start()

    def _drain(self) -> None:
        if self.recorder is None:
            return
        blocks = self.recorder.drain()
        self._chunks.extend(blocks)
        if blocks:  # the meter shows the true peak of what arrived since the last tick
            self._show_level(*meter_reading(np.concatenate(blocks), self.sample_rate))
        wanted = int(round(self.seconds.value() * self.sample_rate))
        have = sum(c.size for c in self._chunks)
        if have >= wanted or time.monotonic() - self._started > self.seconds.value() + 5.0:
            self.timer.stop()
            self.recorder.stop()
            self._chunks.extend(self.recorder.drain())
            self.recorder = None
            take = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
            if take.size < wanted:
                self.status.setText(
                    f"The device delivered {take.size / self.sample_rate:.2f} s of "
                    f"{self.seconds.value():.2f} s; recording stopped"
                )
                self.record_button.setEnabled(True)
                self.save_button.setToolTip("The recording stopped early: record again")
                return
            self.finish_take(take[:wanted])

    def finish_take(self, samples: np.ndarray) -> TakeAssessment:
        """Take ``samples`` as the finished recording: assess it, show what it is, emit ``recorded``.

        Invalid samples (NaN/inf, garbage beyond full scale) become silence so they never reach a WAV;
        the assessment is made on the samples as delivered.
        """
        raw = np.asarray(samples, dtype=np.float32).reshape(-1)
        valid = np.isfinite(raw) & (np.abs(np.nan_to_num(raw)) <= INVALID_ABOVE)
        self._raw = raw
        self.take = np.clip(np.where(valid, raw, 0.0), -1.0, 1.0).astype(np.float32)
        for box in (self.trim_start, self.trim_end):
            box.blockSignals(True)
            box.setValue(0.0)
            box.blockSignals(False)
        self.record_button.setEnabled(True)
        self._assess()
        self.recorded.emit(self.take)
        return self.assessment

    def _assess(self) -> None:
        """Judge the (trimmed) take and set the status line, the meter and the Save button from it."""
        if self._raw is None:
            return
        a, b = self._trim_bounds(self._raw.size)
        trimmed = a > 0 or b < self._raw.size
        self.assessment = assess = assess_take(self._raw[a:b], self.sample_rate)
        message = ("After trimming: " + assess.message[0].lower() + assess.message[1:]) if trimmed else assess.message
        self.status.setText(message)
        font = self.status.font()
        font.setBold(not assess.usable)  # a take that cannot be used says so prominently
        self.status.setFont(font)
        if assess.kind == "invalid":
            self._show_level(-math.inf, "take: invalid input")
        elif assess.kind in ("silent", "empty"):
            self._show_level(assess.peak_dbfs, f"take: silent (peak {format_db(assess.peak_dbfs)} dBFS)")
        else:
            self._show_level(assess.peak_dbfs, f"take: peak {assess.peak_dbfs:.1f} dBFS")
        self.save_button.setEnabled(assess.usable)
        self.save_button.setToolTip(
            "Write the (trimmed) take as a 16-bit WAV and use it as the custom attack's trigger"
            if assess.usable
            else f"Cannot save: {message}"
        )
        # an invalid take may still hold in-range garbage: clipped, that plays as full-scale noise
        self.play_button.setEnabled(self.audio.status.output and assess.kind in ("ok", "silent"))

    def trimmed(self) -> np.ndarray:
        """The take without ``trim start`` seconds at the front and ``trim end`` at the back."""
        if self.take is None:
            return np.zeros(0, np.float32)
        a, b = self._trim_bounds(self.take.size)
        return self.take[a:b]

    def _trim_bounds(self, size: int) -> tuple[int, int]:
        a = min(size, int(round(self.trim_start.value() * self.sample_rate)))
        b = size - int(round(self.trim_end.value() * self.sample_rate))
        return a, max(a, b)

    def play_take(self) -> bool:
        clip = self.trimmed()
        return bool(clip.size) and self.audio.play(clip, self.sample_rate)

    def save(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write the trimmed take; refused (None, with the reason in the status) unless it is a real recording."""
        clip = self.trimmed()
        if clip.size == 0:
            self.status.setText("Nothing to save: record first (or trim less)")
            return None
        if self.assessment is None or not self.assessment.usable:
            reason = self.assessment.message if self.assessment else "record first"
            self.status.setText(f"Not saved: {reason}")
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
