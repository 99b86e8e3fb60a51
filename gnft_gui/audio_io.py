"""Play and record through sounddevice (PortAudio), degrading to "audio unavailable" with a reason.

No Python work happens in the audio callbacks beyond copying into a queue: the recorder's
callback puts each block in a ``queue.Queue`` and the GUI drains it from a timer. Playback is
non-blocking; a new play stops the previous one. Which device is used can be forced with the
environment variable ``GNFT_AUDIO_DEVICE`` (a name or index), which is also how a missing device
is reproduced in tests.
"""

from __future__ import annotations

import logging
import os
import queue
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["AudioStatus", "AudioIO", "Recorder", "level_db"]

log = logging.getLogger("gnft_gui.audio")


@dataclass(frozen=True)
class AudioStatus:
    """Whether playback and recording can work here, and if not, why (shown to the user)."""

    output: bool
    input: bool
    reason: str = ""


def _device() -> Any:
    value = os.environ.get("GNFT_AUDIO_DEVICE")
    if value is None or value == "":
        return None
    return int(value) if value.isdigit() else value


def _import_sounddevice():
    try:
        import sounddevice as sd
    except OSError as err:  # the PortAudio shared library is missing
        raise RuntimeError(f"the PortAudio library is not installed ({err}); install libportaudio2") from None
    return sd


def probe() -> AudioStatus:
    """Check PortAudio and the chosen (or default) input and output devices."""
    try:
        sd = _import_sounddevice()
    except RuntimeError as err:
        return AudioStatus(False, False, str(err))
    reasons, ok = [], {}
    for kind in ("output", "input"):
        try:
            sd.query_devices(_device(), kind=kind)
            ok[kind] = True
        except Exception as err:  # PortAudioError or ValueError for an unknown device
            ok[kind] = False
            reasons.append(f"no audio {kind} device ({err})")
    return AudioStatus(ok["output"], ok["input"], "; ".join(reasons))


def level_db(block: np.ndarray) -> float:
    """RMS level of a block in dBFS (-120 for silence)."""
    rms = float(np.sqrt(np.mean(np.square(block, dtype=np.float64)))) if block.size else 0.0
    return 20 * np.log10(rms) if rms > 1e-6 else -120.0


class AudioIO:
    """Non-blocking playback; ``status`` says whether it can work."""

    def __init__(self) -> None:
        self.status = probe()
        if not self.status.output:
            log.warning("audio playback unavailable: %s", self.status.reason)

    def play(self, wave: np.ndarray, sample_rate: int) -> bool:
        """Start playing ``wave`` (stopping whatever played); False when there is no output."""
        if not self.status.output:
            return False
        sd = _import_sounddevice()
        data = np.clip(np.asarray(wave, dtype=np.float32).reshape(-1), -1.0, 1.0)
        sd.stop()
        sd.play(data, sample_rate, device=_device())
        return True

    def playing(self) -> bool:
        if not self.status.output:
            return False
        stream = self.stream()
        return bool(stream is not None and stream.active)

    def stream(self):
        """The PortAudio stream of the last play (None before the first)."""
        if not self.status.output:
            return None
        try:
            return _import_sounddevice().get_stream()
        except RuntimeError:
            return None

    def stop(self) -> None:
        if self.status.output:
            _import_sounddevice().stop()


class Recorder:
    """Records mono blocks into a queue from PortAudio's callback; ``drain`` collects them."""

    def __init__(self, sample_rate: int = 16000, device: Any = None) -> None:
        self.sample_rate = sample_rate
        self.device = device if device is not None else _device()
        self.blocks: queue.Queue[np.ndarray] = queue.Queue()
        self._stream = None

    def _callback(self, indata, frames, time_info, status) -> None:  # PortAudio's thread: copy only
        self.blocks.put(indata[:, 0].copy())

    def start(self) -> None:
        sd = _import_sounddevice()
        self._stream = sd.InputStream(
            samplerate=self.sample_rate, channels=1, dtype="float32", device=self.device, callback=self._callback
        )
        self._stream.start()

    @property
    def active(self) -> bool:
        return self._stream is not None and bool(self._stream.active)

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None

    def drain(self) -> list[np.ndarray]:
        """Every block recorded since the last drain (called from the GUI thread's timer)."""
        out = []
        while True:
            try:
                out.append(self.blocks.get_nowait())
            except queue.Empty:
                return out
