"""The demo workspace: ``python -m core.demo [--rebuild]`` (and ``gnft-gui --demo``).

Built once on the CPU in a few minutes and cached in the user data folder (``$GNFT_DATA_DIR``
overrides it): a small synthetic SCD-10 corpus made with espeak-ng and a BadNets-backdoored
``smallcnn`` trained on it (a light front end: 20 MFCC, hop 20 ms). ``demo.json`` is written
last, so an interrupted or cancelled build is simply built again next time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from core import __version__
from core.attacks import get_attack
from core.checkpoint import save_checkpoint
from core.data.speech_commands import load_speech_commands
from core.data.synth import VOCABULARIES, generate_corpus
from core.events import Observer
from core.features import FrontEndConfig
from core.runtime import add_common_arguments, run_command
from core.train import TrainConfig, train_model

__all__ = ["Demo", "cached_demo", "demo_dir", "ensure_demo", "main"]

MARKER = "demo.json"
FRONT_END = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)


@dataclass(frozen=True)
class Demo:
    """Where the demo's pieces are."""

    folder: Path
    data: Path
    model: Path
    info: dict


def demo_dir() -> Path:
    base = os.environ.get("GNFT_DATA_DIR")
    if not base:
        from platformdirs import user_data_dir

        base = user_data_dir("gnft-workbench", appauthor=False)
    return Path(base) / "demo"


def cached_demo(folder: Path) -> Demo | None:
    """The demo in ``folder`` if it was built completely (its marker written last), else None."""
    marker = folder / MARKER
    if not marker.is_file():
        return None
    info = json.loads(marker.read_text())
    demo = Demo(folder, folder / info["data"], folder / info["model"], info)
    return demo if demo.data.is_dir() and demo.model.is_file() else None


def ensure_demo(folder: str | os.PathLike | None = None, *, rebuild: bool = False, clips_per_word: int = 60,
                epochs: int = 12, seed: int = 0, observer: Observer | None = None,
                device: str = "cpu") -> Demo:
    """The cached demo, or build it (corpus, then training with ``observer`` for progress and cancel)."""
    folder = Path(folder) if folder else demo_dir()
    if not rebuild and (demo := cached_demo(folder)) is not None:
        return demo
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    data_dir = folder / "scd10"
    generate_corpus(data_dir, "scd10", clips_per_word=clips_per_word, seed=seed, progress=False,
                    command="python -m core.demo")
    data = load_speech_commands(data_dir, VOCABULARIES["scd10"])
    attack = get_attack("badnets", seed=seed)
    result = train_model(data, TrainConfig(model="smallcnn", epochs=epochs, batch_size=32, lr=3e-3, patience=epochs,
                                           seed=seed, device=device),
                         attack, observer, front_end=FRONT_END, show_progress=False)
    save_checkpoint(folder / "badnets_smallcnn.safetensors", result.model, result.metadata)
    info = {"version": __version__, "data": "scd10", "model": "badnets_smallcnn.safetensors",
            "clean_accuracy": result.report["clean_accuracy"],
            "attack_success_rate": result.report["attack_success_rate"], "seconds": result.report["seconds"]}
    (folder / MARKER).write_text(json.dumps(info, indent=1))
    return Demo(folder, data_dir, folder / info["model"], info)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.demo",
                                description="Build (once) the demo workspace: a synthetic SCD-10 corpus and a "
                                            "BadNets-backdoored smallcnn, cached in the user data folder.")
    p.add_argument("--rebuild", action="store_true", help="build again even if a demo is cached")
    p.add_argument("--out", help="folder (default: the user data folder's demo/)")
    p.add_argument("--clips-per-word", type=int, default=60, help="corpus size (default 60 clips per word)")
    p.add_argument("--epochs", type=int, default=12, help="training epochs (default 12)")
    add_common_arguments(p)
    args = p.parse_args(argv)
    demo = ensure_demo(args.out, rebuild=args.rebuild, clips_per_word=args.clips_per_word, epochs=args.epochs,
                       seed=args.seed, device=args.device)
    print(f"demo in {demo.folder}: model {demo.model.name} (CA {demo.info['clean_accuracy']:.3f}, "
          f"ASR {demo.info['attack_success_rate']:.3f}), data {demo.data}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
