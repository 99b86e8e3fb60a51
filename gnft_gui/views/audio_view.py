"""Clean and triggered versions of one clip side by side: waveform, spectrogram, top-3, Play."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QPushButton, QVBoxLayout, QWidget

__all__ = ["AudioView", "spectrogram_db"]

SIDES = ("clean", "triggered")


def spectrogram_db(wave: np.ndarray, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Magnitude spectrogram in dB, ``[frames, n_fft // 2 + 1]`` (for display only)."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.size < n_fft:
        wave = np.pad(wave, (0, n_fft - wave.size))
    frames = 1 + (wave.size - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spec = np.abs(np.fft.rfft(wave[idx] * np.hanning(n_fft)[None, :], axis=1))
    return 20 * np.log10(spec + 1e-6)


class _Side(QWidget):
    def __init__(self, side: str) -> None:
        super().__init__()
        self.title = QLabel(side)
        self.title.setObjectName(f"{side}_title")
        self.wave_plot = pg.PlotWidget()
        self.wave_plot.setObjectName(f"{side}_wave")
        self.wave_plot.setLabel("bottom", "time", units="s")
        self.wave_curve = self.wave_plot.plot(pen=pg.mkPen("#1565c0" if side == "clean" else "#c62828"))
        self.spec_plot = pg.PlotWidget()
        self.spec_plot.setObjectName(f"{side}_spectrogram")
        self.spec_plot.setLabel("bottom", "time", units="s")
        self.spec_plot.setLabel("left", "frequency", units="Hz")
        self.image = pg.ImageItem()
        self.image.setColorMap(pg.colormap.get("viridis"))
        self.spec_plot.addItem(self.image)
        self.top3 = QLabel("")
        self.top3.setObjectName(f"{side}_top3")
        self.play = QPushButton(f"Play {side}")
        self.play.setObjectName(f"play_{side}")
        layout = QVBoxLayout(self)
        for w in (self.title, self.wave_plot, self.spec_plot, self.top3, self.play):
            layout.addWidget(w)

    def show_wave(self, wave: np.ndarray, sample_rate: int) -> None:
        t = np.arange(wave.size) / sample_rate
        self.wave_curve.setData(t, wave)
        spec = spectrogram_db(wave)
        self.image.setImage(spec, autoLevels=True)
        self.image.setRect(0, 0, wave.size / sample_rate, sample_rate / 2)


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
        self.notice.setText("" if reason is None else f"Audio unavailable: {reason}. Listening is off; "
                            "everything else works.")

    def show_clip(self, side: str, wave: np.ndarray, sample_rate: int, top3: list[tuple[str, float]] | None,
                  title: str) -> None:
        self.waves[side] = wave
        widget = self.sides[side]
        widget.title.setText(title)
        widget.show_wave(wave, sample_rate)
        widget.top3.setText("no model loaded" if top3 is None else
                            "  ".join(f"{name} {100 * p:.1f} %" for name, p in top3))

    def clear_side(self, side: str, message: str) -> None:
        self.waves.pop(side, None)
        widget = self.sides[side]
        widget.title.setText(message)
        widget.wave_curve.setData([], [])
        widget.image.clear()
        widget.top3.setText("")
