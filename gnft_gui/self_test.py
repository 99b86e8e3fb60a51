"""``gnft-gui --self-test``: the smoke test of an installation and of the PyInstaller bundle.

It opens a workspace through the window's own open paths, predicts, checks that the model's outputs
are finite probabilities, prints what it checked on stdout and exits 0; on any failure it prints one
line ``gnft-gui --self-test failed: ...`` on stderr and exits 1. With nothing named to open: the
cached demo if there is one, else a tiny built-in model (a ``smallcnn`` with random weights, fixed
seed) and a few generated clips (tones, noise, a chirp) written to a temporary folder.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = [
    "BUILTIN_CLASSES",
    "BUILTIN_TIMEOUT_S",
    "OPEN_TIMEOUT_S",
    "SELF_TEST",
    "SelfTest",
    "SelfTestFailure",
    "audio_line",
    "check_icon",
    "check_window",
    "generated_clips",
    "write_builtin_workspace",
]

SELF_TEST = "gnft-gui self-test"
BUILTIN_CLASSES = ("tone", "noise", "chirp")
BUILTIN_SEED = 0
BUILTIN_TIMEOUT_S = 120  # the built-in workspace is ready in seconds; a hang is a failure
OPEN_TIMEOUT_S = 600  # a workspace the user named (or the demo) may take a while to decode the first time


def generated_clips(sample_rate: int = 16000, num_samples: int | None = None, variant: int = 0) -> dict[str, Any]:
    """One clip per built-in class, made with numpy (float32, peak below 0.5): a tone, white noise, a chirp.

    ``variant`` shifts the frequencies and the noise seed, so several distinct clips per class can be made.
    """
    import numpy as np

    n = int(num_samples or sample_rate)
    t = np.arange(n, dtype=np.float64) / sample_rate
    rng = np.random.default_rng(BUILTIN_SEED + variant)
    f0 = 440.0 * (1 + 0.25 * variant)
    f1 = min(4000.0, sample_rate / 2.5)
    sweep = 2 * np.pi * (200.0 * t + (f1 - 200.0) * t * t * sample_rate / (2 * n))
    clips = {
        "tone": 0.3 * np.sin(2 * np.pi * f0 * t),
        "noise": np.clip(0.1 * rng.standard_normal(n), -0.45, 0.45),
        "chirp": 0.3 * np.sin(sweep),
    }
    return {name: wave.astype(np.float32) for name, wave in clips.items()}


def write_builtin_workspace(folder: str | os.PathLike, clips_per_class: int = 2) -> tuple[Path, Path]:
    """The built-in self-test workspace in ``folder``: a ``smallcnn`` checkpoint with random weights
    (seed 0) for :data:`BUILTIN_CLASSES`, and a Speech Commands folder of generated clips (the last
    clip of each class in the test split). Returns ``(checkpoint, dataset folder)``."""
    import soundfile as sf
    import torch

    from core.checkpoint import make_metadata, save_checkpoint
    from core.features import FrontEndConfig
    from core.models import build

    folder = Path(folder)
    front_end = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)
    torch.manual_seed(BUILTIN_SEED)
    model = build("smallcnn", len(BUILTIN_CLASSES), front_end).eval()
    meta = make_metadata(
        "smallcnn",
        BUILTIN_CLASSES,
        front_end.to_dict(),
        arch_args=model.arch_args,
        data={"source": "gnft-gui --self-test: generated clips"},
        training={"note": "random weights (not trained): the built-in self-test model"},
        seed=BUILTIN_SEED,
    )
    model_path = save_checkpoint(folder / "self-test-smallcnn.safetensors", model, meta)
    data_dir = folder / "clips"
    testing = []
    for variant in range(clips_per_class):
        for word, wave in generated_clips(front_end.sample_rate, front_end.num_samples, variant).items():
            (data_dir / word).mkdir(parents=True, exist_ok=True)
            name = f"selftest{variant}_nohash_0.wav"
            sf.write(data_dir / word / name, wave, front_end.sample_rate, subtype="PCM_16")
            if variant == clips_per_class - 1:
                testing.append(f"{word}/{name}")
    (data_dir / "testing_list.txt").write_text("\n".join(testing) + "\n")
    return model_path, data_dir


class SelfTestFailure(Exception):
    """What the self-test found wrong (one line)."""


def audio_line() -> str:
    """Where PortAudio came from; in a frozen bundle it must load, and from the bundle itself."""
    frozen = getattr(sys, "frozen", False)
    try:
        import sounddevice as sd
    except OSError as err:
        if frozen:
            raise SelfTestFailure(f"the bundle's PortAudio library does not load ({err})") from None
        return f"PortAudio not available ({err}); sound is off, everything else works"
    library = str(getattr(sd, "_libname", "?"))
    if frozen and not Path(library).resolve().is_relative_to(Path(sys._MEIPASS).resolve()):  # type: ignore[attr-defined]
        raise SelfTestFailure(f"PortAudio was loaded from {library}, not from the bundle")
    return f"{sd.get_portaudio_version()[1]} ({library})"


def check_icon(app, icon: Path) -> None:
    """The application icon renders (it needs Qt's SVG image plugin); a bundle must carry it."""
    if not icon.is_file():
        if getattr(sys, "frozen", False):
            raise SelfTestFailure(f"the bundle has no icon {icon}")
        return
    if app.windowIcon().pixmap(64, 64).isNull():
        raise SelfTestFailure(f"the icon {icon} does not render (is Qt's SVG image plugin missing?)")


def _check_probabilities(probs, what: str) -> None:
    import torch

    if not bool(torch.isfinite(probs).all()):
        raise SelfTestFailure(f"the model's outputs on {what} are not finite")
    if bool((probs < 0).any()) or bool((probs > 1).any()):
        raise SelfTestFailure(f"the model's probabilities on {what} lie outside [0, 1]")
    if not torch.allclose(probs.sum(dim=1), torch.ones(probs.shape[0]), atol=1e-4):
        raise SelfTestFailure(f"the model's probabilities on {what} do not sum to 1")


def check_window(window, expect_model: bool, expect_data: bool) -> list[str]:
    """Check the loaded workspace; the lines say what was checked (SelfTestFailure says what failed)."""
    import numpy as np
    import torch

    from core.metrics import predict_logits

    if window.last_error is not None:
        raise SelfTestFailure(f"the window showed an error: {window.last_error.text().splitlines()[0]}")
    if not window.isVisible():
        raise SelfTestFailure("the main window is not visible")
    lines = []
    if expect_model:
        if window.model is None:
            raise SelfTestFailure("no model was loaded")
        meta = window.meta
        fe = meta["front_end"]
        clips = generated_clips(meta["sample_rate"], fe.get("num_samples"))
        waves = torch.from_numpy(np.stack(list(clips.values())))
        with torch.no_grad():
            probs = torch.softmax(predict_logits(window.model, waves), dim=1)
        _check_probabilities(probs, "generated clips")
        answers = []
        for i, name in enumerate(clips):
            top = window.session.top3(waves[i])  # the window's own path (what the audio view shows)
            if not top or not all(0.0 <= p <= 1.0 for _, p in top):
                raise SelfTestFailure(f"the window's top-3 prediction of the generated {name} clip is {top!r}")
            answers.append(f"{name} -> {top[0][0]} ({top[0][1]:.2f})")
        lines.append(f"model: {window.model_path.name} ({meta['architecture']}, {len(meta['classes'])} classes)")
        lines.append("generated clips: " + ", ".join(answers))
    if expect_data:
        if window.data is None:
            raise SelfTestFailure("no dataset was loaded")
        rows = window.clips.table.rowCount()
        if rows != len(window.data):
            raise SelfTestFailure(f"the clip list shows {rows} rows for {len(window.data)} clips")
        if window.model is not None:
            unpredicted = [r for r in range(rows) if not window.clips.table.item(r, 4).text()]
            if unpredicted:
                raise SelfTestFailure(f"{len(unpredicted)} of {rows} clips have no prediction")
            with torch.no_grad():
                probs = torch.softmax(predict_logits(window.model, window.data.waves[:64]), dim=1)
            _check_probabilities(probs, "the dataset's clips")
            window.show_clip(0)  # draws the clean (and triggered) waveform and spectrogram
        lines.append(
            f"dataset: {window.data_path} ({rows} clips{', all predicted' if window.model is not None else ''})"
        )
    return lines


class SelfTest:
    """Waits for the workspace, checks it, ends the event loop with 0 (passed) or 1 (failed)."""

    def __init__(
        self, app, window, *, expect_model: bool, expect_data: bool, timeout_s: float, label: str, started: float
    ) -> None:
        from PySide6.QtCore import QTimer

        self.app, self.window, self.label = app, window, label
        self.expect_model, self.expect_data = expect_model, expect_data
        self.started = started
        self.done = False
        window.error_shown.connect(lambda message: self.fail(f"the window showed an error: {message}"))
        self.timer = QTimer()
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(lambda: self.fail(f"timed out after {timeout_s:.0f} s waiting for {label}"))
        self.timer.start(int(timeout_s * 1000))

    def wait_for(self, signal) -> None:
        signal.connect(lambda *_: self.check())

    def check(self) -> None:
        if self.done:
            return
        # printed as soon as the workspace is there, before the checks (benchmarks/gui_start.py times it)
        print(f"{SELF_TEST}: workspace ready {time.perf_counter() - self.started:.2f} s since start", flush=True)
        try:
            lines = check_window(self.window, self.expect_model, self.expect_data)
        except SelfTestFailure as err:
            self.fail(str(err))
            return
        except Exception as err:  # anything else is a failure of the installation too
            self.fail(f"{type(err).__name__}: {err}")
            return
        self.done = True
        self.timer.stop()
        for line in lines:
            print(f"{SELF_TEST}: {line}", flush=True)
        print(
            f"{SELF_TEST}: passed in {time.perf_counter() - self.started:.1f} s since start ({self.label})", flush=True
        )
        self.app.exit(0)

    def fail(self, message: str) -> None:
        if self.done:
            return
        self.done = True
        self.timer.stop()
        print(f"gnft-gui --self-test failed: {message}", file=sys.stderr, flush=True)
        self.app.exit(1)
