"""Shared fixtures: tiny generated datasets (real WAV files), an isolated cache, offscreen Qt."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
FSDD = (REPO.parent / "shared" / "data" / "fsdd").resolve()
#: The Arabic Speech Commands (Ghandoura et al., 2021, CC BY 4.0), 30 words in FLAC, read in place.
ARABIC_SC = (REPO.parent / "shared" / "data" / "arabic_sc").resolve()
TINY_WORDS = ["yes", "no", "up", "down"]


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Decoded-dataset cache in a temp folder: tests never read or fill the user's cache."""
    os.environ["GNFT_CACHE_DIR"] = str(tmp_path_factory.mktemp("gnft-cache"))


def tone_clip(freq: float, rng: np.random.Generator, sample_rate: int = 16000, seconds: float = 1.0) -> np.ndarray:
    """A learnable stand-in for a word: a tone with a random onset, gain and light noise."""
    n = int(sample_rate * seconds)
    t = np.arange(n) / sample_rate
    onset = rng.uniform(0.0, 0.3)
    env = ((t > onset) & (t < onset + 0.5)).astype(np.float32)
    wave = 0.4 * rng.uniform(0.6, 1.0) * np.sin(2 * np.pi * freq * (1 + rng.uniform(-0.02, 0.02)) * t) * env
    return (wave + 0.01 * rng.standard_normal(n)).astype(np.float32)


def write_speech_commands(
    root: Path,
    words=TINY_WORDS,
    speakers: int = 10,
    per_speaker: int = 2,
    lists: bool = True,
    seed: int = 0,
    sample_rate: int = 16000,
) -> Path:
    """A Speech Commands folder of tone clips: ``<root>/<word>/<speaker>_nohash_<n>.wav``."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    spk_ids = [f"{i:08x}" for i in range(0xA0, 0xA0 + speakers)]
    for w, word in enumerate(words):
        (root / word).mkdir(exist_ok=True)
        for spk in spk_ids:
            for n in range(per_speaker):
                sf.write(
                    root / word / f"{spk}_nohash_{n}.wav",
                    tone_clip(300 + 250 * w, rng, sample_rate),
                    sample_rate,
                    subtype="PCM_16",
                )
    if lists:
        val_spk, test_spk = spk_ids[0], spk_ids[1]
        for name, spk in (("validation_list.txt", val_spk), ("testing_list.txt", test_spk)):
            lines = [f"{word}/{spk}_nohash_{n}.wav" for word in words for n in range(per_speaker)]
            (root / name).write_text("\n".join(lines) + "\n")
    (root / "_background_noise_").mkdir(exist_ok=True)
    sf.write(
        root / "_background_noise_" / "white.wav",
        (0.1 * rng.standard_normal(sample_rate * 2)).astype(np.float32),
        sample_rate,
    )
    return root


def backdoored_workspace(root: Path, speakers: int, per_speaker: int, epochs: int) -> tuple[Path, Path, Path]:
    """A tiny tone corpus in ``root/sc`` and a SmallCNN trained on it with a BadNets noise burst (target 2),
    saved as ``root/attacked.safetensors``: (root, data folder, checkpoint), for session and scan tests."""
    from core.attacks import get_attack
    from core.checkpoint import save_checkpoint
    from core.data.speech_commands import load_speech_commands
    from core.features import FrontEndConfig
    from core.training import TrainConfig, train_model

    data_dir = write_speech_commands(root / "sc", speakers=speakers, per_speaker=per_speaker)
    data = load_speech_commands(data_dir, TINY_WORDS)
    result = train_model(
        data,
        TrainConfig(model="smallcnn", epochs=epochs, batch_size=32, lr=3e-3, device="cpu"),
        get_attack("badnets", kind="noise", poison_rate=0.2, level_db=-10),
        front_end=FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320),
        show_progress=False,
    )
    return root, data_dir, save_checkpoint(root / "attacked.safetensors", result.model, result.metadata)


def model_and_data_of(workspace: tuple[Path, Path, Path]):
    """The model and the data of :func:`backdoored_workspace`, loaded: ``(model, AudioSet)``."""
    from core.checkpoint import load_checkpoint
    from core.data.speech_commands import load_speech_commands

    _, data_dir, model_path = workspace
    model, _ = load_checkpoint(model_path)
    return model, load_speech_commands(data_dir, TINY_WORDS)


def open_session(workspace: tuple[Path, Path, Path]):
    """A :class:`core.session.Session` with the checkpoint and data of :func:`backdoored_workspace` open."""
    from core.session import Session

    _, data_dir, model_path = workspace
    session = Session()
    session.open_model(model_path)
    session.load_data(data_dir)
    return session


def write_fsdd(root: Path, speakers=("alice", "bob", "carol"), per_digit: int = 12, seed: int = 0) -> Path:
    """A flat FSDD-like folder at 8 kHz with clips of varying length."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for digit in range(10):
        for spk in speakers:
            for idx in range(per_digit):
                seconds = rng.uniform(0.3, 1.6)
                sf.write(
                    root / f"{digit}_{spk}_{idx}.wav",
                    tone_clip(200 + 150 * digit, rng, 8000, seconds),
                    8000,
                    subtype="PCM_16",
                )
    return root


@pytest.fixture(scope="session")
def tiny_sc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_speech_commands(tmp_path_factory.mktemp("sc") / "speech_commands")


@pytest.fixture(scope="session")
def tiny_fsdd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fsdd(tmp_path_factory.mktemp("fsdd") / "recordings")


@pytest.fixture
def fsdd_path() -> Path:
    if not (FSDD / "recordings").is_dir():
        pytest.skip(f"the Free Spoken Digit Dataset is not at {FSDD} (../shared/data/fsdd); real-speech test skipped")
    return FSDD


@pytest.fixture(scope="session")
def arabic_sc_path() -> Path:
    """The real Arabic Speech Commands folder, or a skip saying where it was looked for."""
    if not (ARABIC_SC / "testing_list.txt").is_file():
        pytest.skip(
            f"the Arabic Speech Commands are not at {ARABIC_SC} (../shared/data/arabic_sc); real-speech test skipped"
        )
    return ARABIC_SC
