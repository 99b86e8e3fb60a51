"""Train a clean or backdoored keyword-spotting model (the library under ``python -m core.train``).

Adam, batch 256, early stopping on the validation split (never on the test split): the
stopping criterion (``stop_on``) is the clean validation loss, or for a dirty-label backdoor
the authors' 0.5·(clean loss + backdoor loss), measured on validation clips. A clean-label
backdoor (FlowMur) stops on the clean loss: its backdoor loss rises while the clean task is
learnt, so the mixed score would keep an undertrained early epoch. The best epoch's weights
are kept. The whole dataset sits on the device; batches are slices. ``--augment`` adds
random shift, speed perturbation and coloured noise to training batches (core.augment).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import torch
from torch import nn
from torch.nn import functional as F

from core import models
from core.attacks import Attack
from core.augment import AugmentConfig, Augmenter, parse_augment
from core.checkpoint import make_metadata
from core.data import AudioSet
from core.errors import ConfigError
from core.evaluation import evaluate
from core.events import EvalInfo, NullObserver, Observer, StepInfo
from core.features import FrontEndConfig, clip_features
from core.loop import Callback, Loop
from core.options import SEED_RANGE, SEED_TEXT, PathRole, check_ranges, option
from core.runtime import (
    machine_info,
    progress_bar,
    resolve_device,
    seed_everything,
)

__all__ = ["STOP_ON", "EarlyStopping", "ProgressBar", "TrainConfig", "TrainResult", "train_model"]

log = logging.getLogger("core.training")


#: early-stopping criteria: auto (by attack label mode), clean loss, or the authors' mixed score
StopOn = Literal["auto", "clean", "mixed"]
STOP_ON: tuple[str, ...] = get_args(StopOn)


@dataclass
class TrainConfig:
    """Training settings. lr 1e-3 (the authors used 1e-4 for up to 300 epochs; 1e-3 reaches
    the same accuracy in a fraction of the epochs on a CPU), patience in epochs."""

    model: str = option(
        "resnet",
        hidden=True,
        label="Architecture",
        help="architecture (core.models); its own --model option lists them",
    )
    epochs: int = option(
        60, label="Epochs", primary=True, range="[1, inf)", note="nothing would be trained", help="maximum epochs"
    )
    batch_size: int = option(
        256, label="Batch size, clips", range="[1, inf)", note="nothing would be trained", help="batch size"
    )
    lr: float = option(1e-3, label="Learning rate", primary=True, range="(0, inf)", help="Adam learning rate")
    weight_decay: float = option(0.0, label="Weight decay", range="[0, inf)", help="Adam weight decay")
    patience: int = option(
        10,
        label="Patience, epochs",
        range="[1, inf)",
        note="nothing would be trained",
        help="early-stopping patience in epochs",
    )
    stop_on: StopOn = option(
        "auto",
        label="Stop on",
        help="early-stopping criterion on the validation split: clean loss, mixed = 0.5*(clean + "
        "backdoor loss) (the authors'), or auto = mixed for dirty-label attacks and clean "
        "for clean-label ones such as FlowMur",
    )
    seed: int = option(
        0,
        hidden=True,
        label="Seed",
        help="seed of initialisation, batch order, dropout and poisoning",
        range=SEED_RANGE,
        range_text=SEED_TEXT,
    )
    device: str = option("auto", hidden=True, label="Device", help="auto, cpu or cuda")
    arch_args: dict[str, Any] = option(
        default_factory=dict,
        flag="arch-arg",
        metavar="KEY=VALUE",
        label="Architecture arguments",
        help="architecture argument (repeatable)",
    )
    augment: AugmentConfig = option(
        default_factory=AugmentConfig,
        metavar="SPEC",
        parse=parse_augment,
        label="Augmentation",
        help="training-batch augmentation: none (default), default (shift=100,"
        "speed=0.9:1.1,noise=0.8,snr=10:30) or key=value pairs from shift (ms), "
        "speed (slowest:fastest), noise (share of clips given white/pink/brown "
        "noise), snr (dB range)",
    )
    init_from: str | None = option(
        None,
        metavar="CHECKPOINT",
        path=PathRole("input"),
        label="Start from",
        help="start from this checkpoint's weights (same architecture, classes and front "
        "end), e.g. to continue a run that hit its epoch cap; the optimiser starts "
        "fresh",
    )
    amp: Literal["none", "bf16"] = option(
        "none",
        label="Mixed precision",
        help="bf16 autocast for the training forward/backward (CUDA; CPUs with bf16 support)",
    )
    compile: bool = option(
        False,
        label="torch.compile",
        help="torch.compile the classifier for training (first steps compile; needs a C++ compiler on CPU)",
    )
    memory_format: Literal["auto", "channels_last", "contiguous"] = option(
        "auto",
        label="Memory layout",
        help="layout of the conv weights while training: auto (channels_last on a CPU, with exact BatchNorm: "
        "the fastest there; contiguous on a GPU), channels_last or contiguous (dropout masks follow the "
        "layout, so a seed repeats within one layout; the checkpoint is written in the usual layout)",
    )

    def __post_init__(self) -> None:
        check_ranges(self)  # the declared ranges and choices, before any data is read

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (the augmentation as its own dict)."""
        return {**asdict(self), "augment": self.augment.to_dict()}


@dataclass
class TrainResult:
    model: nn.Sequential
    metadata: dict[str, Any]
    report: dict[str, Any]


def stop_criterion(stop_on: str, attack: Attack | None) -> str:
    """The early-stopping criterion actually used: ``clean`` or ``mixed`` (0.5·(clean + backdoor loss)).

    ``auto`` is mixed for a dirty-label backdoor and clean otherwise (clean model, clean-label attack).
    """
    if attack is None:
        return "clean"
    if stop_on == "auto":
        return "clean" if attack.params.label_mode == "clean" else "mixed"
    return stop_on


def _stop_score(metrics: dict[str, float], criterion: str) -> float:
    if criterion == "mixed" and "backdoor_loss" in metrics and math.isfinite(metrics["backdoor_loss"]):
        return 0.5 * (metrics["clean_loss"] + metrics["backdoor_loss"])
    return metrics["clean_loss"]


class EarlyStopping(Callback):
    """After every epoch: measure the validation split, keep the best epoch's weights (by the
    ``criterion`` score), stop after ``patience`` epochs without improvement."""

    def __init__(
        self, model: nn.Module, data: AudioSet, attack: Attack | None, criterion: str, patience: int, observer: Observer
    ) -> None:
        self.model, self.data, self.attack, self.criterion = model, data, attack, criterion
        self.patience, self.observer = patience, observer
        self.cache: dict[str, torch.Tensor] = {}  # the triggered clips, made once
        self.history: list[dict[str, Any]] = []
        self.best_score, self.best_epoch, self.best_state, self.since_best = math.inf, -1, None, 0
        self.loss_sum, self.seen = 0.0, 0

    def on_epoch_start(self, loop: Loop, epoch: int) -> None:
        self.loss_sum, self.seen = 0.0, 0

    def on_step(self, loop: Loop, info: StepInfo) -> None:
        self.loss_sum += info.loss * loop.batch_rows
        self.seen += loop.batch_rows

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        val = evaluate(self.model, self.data, "validation", self.attack, cache=self.cache)
        score = _stop_score(val, self.criterion)
        self.history.append(
            {"epoch": epoch, "train_loss": self.loss_sum / max(self.seen, 1), **{f"val_{k}": v for k, v in val.items()}}
        )
        self.observer.on_eval(
            EvalInfo(
                "validation",
                epoch,
                val["clean_accuracy"],
                val["clean_loss"],
                val.get("attack_success_rate"),
                val.get("robust_accuracy"),
            )
        )
        if score < self.best_score - 1e-6:
            self.best_score, self.best_epoch, self.since_best = score, epoch, 0
            self.best_state = copy.deepcopy(self.model.state_dict())
        else:
            self.since_best += 1
        if self.since_best >= self.patience:
            loop.stop = True


class ProgressBar(Callback):
    """A tqdm bar per epoch with the last row of ``EarlyStopping``'s history, or a log line per epoch
    when the bar is off (not a terminal) and progress was not switched off."""

    def __init__(self, bar: Any, show: bool | None) -> None:
        self.bar, self.show = bar, show

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        stopping = next(c for c in loop.callbacks if isinstance(c, EarlyStopping))
        row = stopping.history[-1]
        val = {k[4:]: v for k, v in row.items() if k.startswith("val_")}
        self.bar.set_postfix(
            loss=f"{row['train_loss']:.3f}",
            val_ca=f"{val['clean_accuracy']:.3f}",
            **({"val_asr": f"{val['attack_success_rate']:.3f}"} if "attack_success_rate" in val else {}),
        )
        self.bar.update(1)
        if self.bar.disable and self.show is not False:
            log.info(
                "epoch %d: train loss %.4f, validation %s",
                epoch,
                row["train_loss"],
                ", ".join(f"{k} {v:.4f}" for k, v in val.items()),
            )

    def on_end(self, loop: Loop) -> None:
        self.bar.close()


def train_model(
    data: AudioSet,
    config: TrainConfig,
    attack: Attack | None = None,
    observer: Observer | None = None,
    *,
    front_end: FrontEndConfig | None = None,
    show_progress: bool | None = None,
) -> TrainResult:
    """Train ``config.model`` on the training split of ``data`` (poisoned by ``attack`` if given).

    Returns the best-validation model (eval mode, on the training device), its checkpoint
    metadata and a report with test-split CA (and ASR/RA for a backdoor).
    """
    observer = observer or NullObserver()
    started = time.perf_counter()
    device = resolve_device(config.device)
    generator = seed_everything(config.seed)
    fe = front_end or FrontEndConfig(sample_rate=data.sample_rate, num_samples=data.num_samples)
    if fe.sample_rate != data.sample_rate or fe.num_samples != data.num_samples:
        raise ConfigError(
            f"the front end expects {fe.num_samples} samples at {fe.sample_rate} Hz but the data has "
            f"{data.num_samples} at {data.sample_rate} Hz"
        )
    if attack is not None and attack.params.target >= len(data.classes):
        raise ConfigError(f"attack target {attack.params.target} is not a class index (0-{len(data.classes) - 1})")
    model = models.build(config.model, len(data.classes), fe, **config.arch_args)
    if config.init_from:
        _warm_start(model, config, data, fe)
    model = model.to(device)
    data = data.to(device)
    train_idx = data.splits["train"]
    if attack is not None and not attack.prepared:  # learn the trigger on the training split only
        log.info("preparing attack %s on %d training clips", attack.name, int(train_idx.numel()))
        attack.prepare(
            data.waves, data.labels, train_idx, data.sample_rate, list(data.classes), front_end=fe, device=device
        )
    if attack is not None:
        poisoned = attack.poison(data.waves, data.labels, train_idx, data.sample_rate)
        train_waves, train_labels = poisoned.waves, poisoned.labels
        feature_rows = poisoned.poisoned.to(device) if attack.domain == "features" else None
        n_poisoned = int(poisoned.poisoned.numel())
    else:
        train_waves = data.waves.index_select(0, train_idx)
        train_labels = data.labels.index_select(0, train_idx)
        feature_rows, n_poisoned = None, 0
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    is_feature_poison = torch.zeros(train_waves.shape[0], dtype=torch.bool, device=device)
    if feature_rows is not None:
        is_feature_poison[feature_rows] = True
    augmenter = Augmenter(config.augment, data.sample_rate, device, config.seed) if config.augment.active else None
    criterion = stop_criterion(config.stop_on, attack)
    # without augmentation every clip's features are the same in every epoch: computed once
    train_feats = None if augmenter is not None else clip_features(model[0], train_waves, 512)

    def step(classifier: nn.Module, rows: torch.Tensor) -> float:
        y = train_labels.index_select(0, rows)
        if train_feats is not None:
            feats = train_feats.index_select(0, rows)
        else:
            feats = model[0](augmenter(train_waves.index_select(0, rows)))
        if feature_rows is not None:
            mask = is_feature_poison.index_select(0, rows)
            if bool(mask.any()):
                feats = torch.where(mask.view(-1, 1, 1, 1), attack.apply_features(feats), feats)
        loss = F.cross_entropy(classifier(feats), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    stopping = EarlyStopping(model, data, attack, criterion, config.patience, observer)
    bar = ProgressBar(progress_bar(config.epochs, f"train {config.model}", show_progress), show_progress)
    loop = Loop(
        "train",
        model[1],
        step,
        int(train_waves.shape[0]),
        epochs=config.epochs,
        batch_size=config.batch_size,
        device=device,
        order=generator,
        amp=config.amp,
        compile=config.compile,
        layout=config.memory_format,
        optimizer=optimizer,
        train_mode=model.train,
        observer=observer,
        callbacks=[stopping, bar],
    )
    loop.run()
    if stopping.best_state is not None:
        model.load_state_dict(stopping.best_state)
    model.eval()
    history, best_epoch, triggered_cache = stopping.history, stopping.best_epoch, stopping.cache
    test = evaluate(model, data, "test", attack, cache=triggered_cache)
    seconds = time.perf_counter() - started
    training = {
        "optimizer": "adam",
        **{k: v for k, v in config.to_dict().items() if k not in ("device",)},
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "seconds": round(seconds, 2),
        "device": str(device),
        "early_stopping": "validation split: "
        + ("0.5*(clean loss + backdoor loss)" if criterion == "mixed" else "clean loss"),
        "poisoned_clips": n_poisoned,
        "test": test,
    }
    metadata = make_metadata(
        config.model,
        data.classes,
        fe.to_dict(),
        arch_args=config.arch_args,
        data=data.summary(),
        attack=attack.to_dict() if attack is not None else None,
        training=training,
        seed=config.seed,
    )
    report: dict[str, Any] = {
        "clean_accuracy": test["clean_accuracy"],
        **(
            {"attack_success_rate": test["attack_success_rate"], "robust_accuracy": test["robust_accuracy"]}
            if attack is not None
            else {}
        ),
        "seconds": round(seconds, 2),
        "device": str(device),
        "model": config.model,
        "attack": attack.to_dict() if attack is not None else None,
        "data": data.summary(),
        "config": config.to_dict(),
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "poisoned_clips": n_poisoned,
        "test": test,
        "history": history,
        "machine": machine_info(device),
    }
    return TrainResult(model, metadata, report)


def _warm_start(model: nn.Module, config: TrainConfig, data: AudioSet, fe: FrontEndConfig) -> None:
    """Start from a checkpoint's weights (continue a capped run, fine-tune a model): same
    architecture, arguments, classes and front end, or a ConfigError naming what differs."""
    from core.checkpoint import load_checkpoint

    start, meta = load_checkpoint(config.init_from)
    wanted = {
        "architecture": config.model,
        "classes": list(data.classes),
        "front_end": fe.to_dict(),
        "arch_args": models.resolve_arch_args(config.model, config.arch_args),
    }
    have = {
        "architecture": meta["architecture"],
        "classes": list(meta["classes"]),
        "front_end": meta["front_end"],
        "arch_args": (
            models.resolve_arch_args(meta["architecture"], meta.get("arch_args", {}))
            if meta["architecture"] == config.model
            else meta.get("arch_args", {})
        ),
    }
    differ = [k for k in wanted if wanted[k] != have[k]]
    if differ:
        raise ConfigError(
            f"--init-from {config.init_from} does not match this run: "
            + "; ".join(f"{k} {have[k]} vs {wanted[k]}" for k in differ)
        )
    model.load_state_dict(start.state_dict())
