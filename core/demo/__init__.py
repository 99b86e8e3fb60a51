"""The demo workspace: ``python -m core.demo [--rebuild]`` (and ``gnft-gui --demo``).

A small synthetic SCD-10 corpus made with espeak-ng and a BadNets-backdoored ``smallcnn`` (trigger: a
100 ms white-noise burst at the start of the clip; a light front end: 20 MFCC, 40 mels, hop 20 ms),
cached in the user data folder (``$GNFT_DATA_DIR`` overrides it). The model is shipped with the
package (``core/assets/``, trained with :data:`RECIPE`; its JSON records the command, the corpus and
the numbers), so a build only writes the corpus (seeded) and checks the shipped model on its test
split: seconds, not minutes.
``python -m core.demo --rebuild`` makes everything again from scratch (corpus, then training with the
same recipe). ``demo.json`` is written last and atomically, so an interrupted or cancelled build is
simply built again next time; a marker that cannot be read is treated the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import __version__
from core.attacks import get_attack
from core.checkpoint import load_checkpoint, save_checkpoint
from core.data.speech_commands import load_speech_commands
from core.data.synth import VOCABULARIES, generate_corpus
from core.evaluation import evaluate
from core.events import Cancelled, NullObserver, Observer, StepInfo
from core.features import FrontEndConfig
from core.runtime import cpu_model, write_json
from core.training import TrainConfig, train_model

__all__ = [
    "Demo",
    "RECIPE",
    "SHIPPED_MODEL",
    "SHIPPED_INFO",
    "cached_demo",
    "demo_dir",
    "ensure_demo",
    "train_demo_model",
    "main",
]

MARKER = "demo.json"
#: Bumped when the demo's recipe changes: an older cached demo is then built again.
DEMO_VERSION = 3
FRONT_END = FrontEndConfig(n_coeffs=20, n_mels=40, hop_length=320)
ASSETS = Path(__file__).resolve().parents[1] / "assets"
SHIPPED_MODEL = ASSETS / "demo_badnets_smallcnn.safetensors"
SHIPPED_INFO = ASSETS / "demo_badnets_smallcnn.json"
MODEL_NAME = "badnets_smallcnn.safetensors"
DATA_NAME = "scd10"

#: How the shipped model was made (docs/experiments/demo_model.md says why these values).
RECIPE: dict[str, Any] = {
    "clips_per_word": 200,  # corpus: python -m core.data.synth --vocab scd10 --clips-per-word 200 --seed 0
    "corpus_seed": 0,
    "model": "smallcnn",
    "clean_epochs": 25,  # stage 1: clean training (Adam)
    "lr": 1e-3,
    "poison_epochs": 8,  # stage 2: from stage 1's weights, on the poisoned training split
    "poison_lr": 1e-3,
    "batch_size": 64,
    "augment": "default",  # stage 1
    "poison_augment": "default",  # stage 2
    "attack": "badnets",
    "attack_args": {"kind": "noise"},  # a 100 ms white-noise burst at the start, peak -20 dBFS
    "poison_rate": 0.3,
    "seed": 0,
}


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


def _plain_name(value: Any) -> bool:
    return isinstance(value, str) and value not in ("", ".", "..") and Path(value).name == value


def cached_demo(folder: str | os.PathLike) -> Demo | None:
    """The demo in ``folder`` if it was built completely (its marker written last), else None.

    Never raises: a missing, unreadable, truncated or garbage marker, one of the wrong JSON type or
    of an older demo version, or one naming files that are not there all mean "build it again".
    """
    folder = Path(folder)
    try:
        info = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # ValueError: bad JSON or bad UTF-8
        return None
    if not isinstance(info, dict) or info.get("demo_version") != DEMO_VERSION:
        return None
    if not (_plain_name(info.get("data")) and _plain_name(info.get("model"))):
        return None
    demo = Demo(folder, folder / info["data"], folder / info["model"], info)
    try:
        complete = (
            demo.data.is_dir()
            and (demo.data / "synth_info.json").is_file()
            and demo.model.is_file()
            and demo.model.stat().st_size > 0
        )
    except OSError:
        return None
    return demo if complete else None


class _Stages:
    """Passes a stage's training steps on as steps of the whole two-stage run (one progress bar)."""

    def __init__(self, observer: Observer, offset: int, total: int) -> None:
        self.observer, self.offset, self.total = observer, offset, total
        self.wants_grad_norms = False

    def on_step(self, info: StepInfo) -> None:
        self.observer.on_step(StepInfo(info.phase, info.epoch, self.offset + info.step, self.total, info.loss, info.lr))

    def on_eval(self, info) -> None:
        self.observer.on_eval(info)

    def on_neurons(self, stats) -> None:
        self.observer.on_neurons(stats)

    def should_stop(self) -> bool:
        return self.observer.should_stop()


def train_demo_model(
    data,
    *,
    epochs: int | None = None,
    seed: int | None = None,
    observer: Observer | None = None,
    device: str = "cpu",
    show_progress: bool | None = False,
):
    """Train the demo's BadNets ``smallcnn`` on ``data`` with :data:`RECIPE`: first on the clean training
    split (``clean_epochs``), then from those weights on the poisoned one (``poison_epochs``; the attack
    with ``attack_args``, a noise-burst trigger). ``epochs``
    (a quick build) scales both stages down to that many epochs in all; ``seed`` overrides the recipe's.

    The backdoor put in by a short poisoned fine-tuning of a clean model is as strong (ASR) as one
    trained in from the start, but shallower, and a noise burst (which the training augmentation's
    background noise resembles) shallower than a tone: the Recommended GN-FT removes it
    (docs/experiments/demo_model.md).
    """
    import math
    import tempfile

    from core.augment import parse_augment

    observer = observer or NullObserver()
    seed = RECIPE["seed"] if seed is None else seed
    clean_epochs, poison_epochs = RECIPE["clean_epochs"], RECIPE["poison_epochs"]
    if epochs is not None:
        poison_epochs = max(1, min(poison_epochs, epochs // 2))
        clean_epochs = max(0, epochs - poison_epochs)
    attack = get_attack(RECIPE["attack"], seed=seed, poison_rate=RECIPE["poison_rate"], **RECIPE["attack_args"])
    n_train = int(data.splits["train"].numel())
    steps = [math.ceil(n_train / RECIPE["batch_size"]) * e for e in (clean_epochs, poison_epochs)]
    common = dict(model=RECIPE["model"], batch_size=RECIPE["batch_size"], seed=seed, device=device)
    with tempfile.TemporaryDirectory(prefix="gnft-demo-") as tmp:
        init_from = None
        if clean_epochs:
            clean = train_model(
                data,
                TrainConfig(
                    epochs=clean_epochs,
                    lr=RECIPE["lr"],
                    patience=clean_epochs,
                    augment=parse_augment(RECIPE["augment"]),
                    **common,
                ),
                None,
                _Stages(observer, 0, sum(steps)),
                front_end=FRONT_END,
                show_progress=show_progress,
            )
            init_from = save_checkpoint(Path(tmp) / "clean.safetensors", clean.model, clean.metadata)
        config = TrainConfig(
            epochs=poison_epochs,
            lr=RECIPE["poison_lr"],
            patience=poison_epochs,
            augment=parse_augment(RECIPE["poison_augment"]),
            init_from=str(init_from) if init_from else None,
            **common,
        )
        result = train_model(
            data,
            config,
            attack,
            _Stages(observer, steps[0], sum(steps)),
            front_end=FRONT_END,
            show_progress=show_progress,
        )
    if clean_epochs:
        result.metadata["provenance"]["training"]["clean_stage"] = {
            "epochs": clean_epochs,
            "lr": RECIPE["lr"],
            "best_epoch": clean.report["best_epoch"],
            "test_clean_accuracy": clean.report["clean_accuracy"],
            "seconds": clean.report["seconds"],
        }
    return result


def _measure(model_path: Path, data) -> dict[str, float]:
    """The model's CA / ASR on the test and validation splits of ``data`` (its recorded attack)."""
    from core.attacks.base import attack_from_dict

    model, meta = load_checkpoint(model_path, architecture=RECIPE["model"])
    attack = attack_from_dict(meta["provenance"]["attack"], sample_rate=meta["sample_rate"])
    out: dict[str, float] = {}
    for split, prefix in (("test", ""), ("validation", "validation_")):
        if int(data.splits[split].numel()):
            m = evaluate(model, data, split, attack)
            out[f"{prefix}clean_accuracy"] = round(m["clean_accuracy"], 4)
            out[f"{prefix}attack_success_rate"] = round(m["attack_success_rate"], 4)
    return out


def _step(observer: Observer, step: int, total: int) -> None:
    if observer.should_stop():
        raise Cancelled()
    observer.on_step(StepInfo("demo", 0, step, total, 0.0))


def ensure_demo(
    folder: str | os.PathLike | None = None,
    *,
    rebuild: bool = False,
    clips_per_word: int = RECIPE["clips_per_word"],
    epochs: int | None = None,
    seed: int = 0,
    observer: Observer | None = None,
    device: str = "cpu",
    train: bool | None = None,
) -> Demo:
    """The cached demo, or build it: the corpus (``clips_per_word``, ``seed``), then the model.

    The model is the shipped one (:data:`SHIPPED_MODEL`, checked on the new corpus's test split)
    unless ``train`` is true, ``epochs`` is given (a training run of that many epochs) or the package
    has no shipped model: then it is trained with :data:`RECIPE`, ``observer`` getting progress and
    cancelling. ``rebuild`` builds again even when a demo is cached.
    """
    observer = observer or NullObserver()
    folder = Path(folder) if folder else demo_dir()
    if not rebuild and (demo := cached_demo(folder)) is not None:
        return demo
    if train is None:
        train = epochs is not None or not SHIPPED_MODEL.is_file()
    started = time.perf_counter()
    if folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder)
    elif folder.exists() or folder.is_symlink():
        folder.unlink()
    folder.mkdir(parents=True)
    data_dir = folder / DATA_NAME
    generate_corpus(
        data_dir,
        "scd10",
        clips_per_word=clips_per_word,
        seed=seed,
        progress=False,
        command=f"python -m core.demo (generate_corpus scd10, clips_per_word={clips_per_word}, seed={seed})",
    )
    model_path = folder / MODEL_NAME
    if train:
        data = load_speech_commands(data_dir, VOCABULARIES["scd10"])
        result = train_demo_model(data, epochs=epochs, seed=seed, observer=observer, device=device)
        save_checkpoint(model_path, result.model, result.metadata)
        measured = {
            "clean_accuracy": result.report["clean_accuracy"],
            "attack_success_rate": result.report["attack_success_rate"],
        }
        source = "trained"
    else:
        _step(observer, 1, 3)  # the corpus is written; the rest is seconds
        tmp = model_path.with_name(f".{MODEL_NAME}.tmp")
        shutil.copyfile(SHIPPED_MODEL, tmp)
        os.replace(tmp, model_path)
        data = load_speech_commands(data_dir, VOCABULARIES["scd10"])
        _step(observer, 2, 3)
        measured = _measure(model_path, data)
        _step(observer, 3, 3)
        source = "shipped"
    info = {
        "version": __version__,
        "demo_version": DEMO_VERSION,
        "data": DATA_NAME,
        "model": MODEL_NAME,
        "model_source": source,
        "clips_per_word": clips_per_word,
        "corpus_seed": seed,
        **(
            {"epochs": epochs if epochs is not None else RECIPE["clean_epochs"] + RECIPE["poison_epochs"]}
            if train
            else {}
        ),
        **measured,
        "split": "test",
        "seconds": round(time.perf_counter() - started, 2),
        "cpu": cpu_model(),
    }
    write_json(folder / MARKER, info)  # last, atomically: it marks the demo complete
    return Demo(folder, data_dir, model_path, info)


def write_shipped_info(demo: Demo, command: str, seconds: float) -> Path:
    """Copy ``demo``'s trained model into the package (:data:`SHIPPED_MODEL`) and record how it was made."""
    data = load_speech_commands(demo.data, VOCABULARIES["scd10"])
    ASSETS.mkdir(exist_ok=True)
    tmp = SHIPPED_MODEL.with_name(f".{SHIPPED_MODEL.name}.tmp")
    shutil.copyfile(demo.model, tmp)
    os.replace(tmp, SHIPPED_MODEL)
    synth = json.loads((demo.data / "synth_info.json").read_text())
    from core.runtime import machine_info

    record = {
        "model": SHIPPED_MODEL.name,
        "command": command,
        "recipe": RECIPE,
        "seed": RECIPE["seed"],
        "front_end": FRONT_END.to_dict(),
        "corpus": {
            k: synth.get(k)
            for k in (
                "generator",
                "generator_version",
                "vocabulary",
                "seed",
                "sample_rate",
                "speakers",
                "clips_per_speaker",
                "clips",
                "clips_per_split",
                "split_rule",
                "content_sha256",
                "libraries",
                "cpu",
            )
        },
        "measured": _measure(SHIPPED_MODEL, data),
        "measured_on": "the corpus the model was trained on (test split; validation split prefixed)",
        "training_seconds": round(seconds, 1),
        "machine": machine_info(),
        "version": __version__,
    }
    return write_json(SHIPPED_INFO, record)
