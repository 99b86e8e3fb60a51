"""Clean and triggered versions of one clip side by side: waveform, spectrogram, top-3, Play."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from gnft_gui.views.plots import SERIES, colour_bar, make_plot, reserve_colour_bar_space, set_levels

__all__ = ["AudioView", "spectrogram_db"]

SIDES = ("clean", "triggered")
DYNAMIC_RANGE_DB = 80.0  # the spectrogram shows the loudest 80 dB of a clip
LEFT_AXIS_WIDTH = 46  # the same for the waveform and the spectrogram: their time axes line up


def spectrogram_db(wave: np.ndarray, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Magnitude spectrogram in dB full scale, ``[frames, n_fft // 2 + 1]`` (for display only).

    0 dBFS is the peak of a full-scale sine (amplitude 1); the floor is -120 dBFS.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.size < n_fft:
        wave = np.pad(wave, (0, n_fft - wave.size))
    frames = 1 + (wave.size - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    window = np.hanning(n_fft)
    spec = np.abs(np.fft.rfft(wave[idx] * window[None, :], axis=1)) / (window.sum() / 2)
    return 20 * np.log10(spec + 1e-6)


class _Side(QWidget):
    def __init__(self, side: str) -> None:
        super().__init__()
        self.title = QLabel(side)
        self.title.setObjectName(f"{side}_title")
        self.wave_plot = make_plot(
            None, "time", "s", "amplitude", "", tooltip=f"waveform of the {side} clip (full scale ±1)"
        )
        self.wave_plot.setObjectName(f"{side}_wave")
        self.wave_curve = self.wave_plot.plot(pen=pg.mkPen(SERIES["blue" if side == "clean" else "vermillion"]))
        self.spec_plot = make_plot(
            None,
            "time",
            "s",
            "frequency",
            "kHz",
            tooltip=f"spectrogram of the {side} clip: level per time and frequency, "
            f"the loudest {DYNAMIC_RANGE_DB:.0f} dB",
        )
        self.spec_plot.setObjectName(f"{side}_spectrogram")
        self.image = pg.ImageItem()
        self.spec_plot.addItem(self.image)
        self.colour_bar = colour_bar(self.spec_plot, self.image, "level", "dBFS", levels=(-DYNAMIC_RANGE_DB, 0.0))
        reserve_colour_bar_space(self.wave_plot, self.colour_bar)
        for plot in (self.wave_plot, self.spec_plot):
            plot.getAxis("left").setWidth(LEFT_AXIS_WIDTH)
            plot.setMinimumSize(240, 140)  # room for "frequency (kHz)" along the axis, and for the colour bar
        self.wave_plot.setXLink(self.spec_plot)  # one time axis for both
        self._empty_ranges()
        self.top3 = QLabel("")
        self.top3.setObjectName(f"{side}_top3")
        self.play = QPushButton(f"Play {side}")
        self.play.setObjectName(f"play_{side}")
        self.top3.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        for w in (self.title, self.wave_plot, self.spec_plot, self.top3, self.play):
            layout.addWidget(w, 1 if isinstance(w, pg.PlotWidget) else 0)

    def _empty_ranges(self, duration: float = 1.0, sample_rate: int = 16000) -> None:
        """Ranges that make sense before a clip is shown: 1 s, full scale, 0 to 8 kHz."""
        self.spec_plot.setRange(xRange=(0, duration), yRange=(0, sample_rate / 2000), padding=0)
        self.wave_plot.setYRange(-1, 1, padding=0.02)

    def show_wave(self, wave: np.ndarray, sample_rate: int) -> None:
        t = np.arange(wave.size) / sample_rate
        self.wave_curve.setData(t, wave)
        self.spec_plot.setRange(xRange=(0, wave.size / sample_rate), yRange=(0, sample_rate / 2000), padding=0)
        self.wave_plot.enableAutoRange(y=True)
        spec = spectrogram_db(wave)
        self.image.setImage(spec, autoLevels=False)
        peak = float(spec.max())
        set_levels(self.colour_bar, self.image, peak - DYNAMIC_RANGE_DB, peak)
        self.image.setRect(0, 0, wave.size / sample_rate, sample_rate / 2 / 1000)  # kHz


class AudioView(QWidget):
    """Emits ``play_requested(side)``; without audio the Play buttons are replaced by a notice."""

    play_requested = Signal(str)

    def __init__(self, audio_reason: str | None = None) -> None:
        super().__init__()
        self.sides = {side: _Side(side) for side in SIDES}
        self.notice = QLabel("")
        self.notice.setObjectName("audio_notice")
        self.notice.setWordWrap(True)
        layout = QGridLayout(self)
        layout.addWidget(self.sides["clean"], 0, 0)
        layout.addWidget(self.sides["triggered"], 0, 1)
        layout.addWidget(self.notice, 1, 0, 1, 2)
        for side, widget in self.sides.items():
            widget.play.clicked.connect(lambda _=False, s=side: self.play_requested.emit(s))
        self.set_audio_available(audio_reason)
        self.waves: dict[str, np.ndarray] = {}

    def set_audio_available(self, reason: str | None) -> None:
        """``reason`` None: audio works; otherwise hide the Play buttons and say why."""
        for widget in self.sides.values():
            widget.play.setVisible(reason is None)
        self.notice.setVisible(reason is not None)
        self.notice.setText(
            "" if reason is None else f"Audio unavailable: {reason}. Listening is off; everything else works."
        )

    def show_clip(
        self, side: str, wave: np.ndarray, sample_rate: int, top3: list[tuple[str, float]] | None, title: str
    ) -> None:
        self.waves[side] = wave
        widget = self.sides[side]
        widget.title.setText(title)
        widget.show_wave(wave, sample_rate)
        widget.top3.setText(
            "no model loaded" if top3 is None else "  ".join(f"{name} {100 * p:.1f} %" for name, p in top3)
        )

    def clear_side(self, side: str, message: str) -> None:
        self.waves.pop(side, None)
        widget = self.sides[side]
        widget.title.setText(message)
        widget.wave_curve.setData([], [])
        widget.image.clear()
        widget.top3.setText("")
