"""The Defense interface: repair a copy of a model on a small clean set, reporting as it goes.

A defense never modifies the model it is given: it works on a deep copy, and a cancelled
run (the observer's ``should_stop``) returns the input object itself, untouched, with
``cancelled=True``. Hyperparameters are dataclasses with the paper's defaults.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar, Literal

import torch
from torch import nn

from core.analysis.grad_norms import GradOf, neuron_grad_norms
from core.data.audioset import AudioSet
from core.errors import ConfigError
from core.events import Cancelled, EvalInfo, NullObserver, Observer, StepInfo
from core.models import split_front_end
from core.runtime import autocast, check_memory_format, memory_format, resolve_device

__all__ = ["DefenseConfig", "DefenseResult", "Defense", "OPTION_HELP", "OPTION_LABELS", "PERCENT_OPTIONS",
           "PRIMARY_OPTIONS", "clean_subset", "clip_features", "mask_bands", "train_mode",
           "Evaluator"]

#: ``evaluate(model) -> {"clean_accuracy": ..., "attack_success_rate": ...}``, called every ``eval_every`` epochs.
Evaluator = Callable[[nn.Module], dict[str, float]]


@dataclass
class DefenseConfig:
    """What every fine-tuning defense has: data share, schedule, seed, device.

    300 epochs and an evaluation every 10 are the authors' GN-FT loop; at 5 % of a few
    thousand clips an epoch is one or two batches, so this is a few hundred steps. Every
    fine-tuning defense gets the same budget so that comparisons are fair.
    ``max_grad_norm`` clips the final gradient's global L2 norm before each step (GNP's reference
    clips at 5.0; the authors' PyTorch code does not: 0, the default, means no clipping).
    ``lr_schedule`` "cosine" anneals the lr per step from ``lr`` towards 0 over the run, after a
    linear warm-up of ``warmup_epochs`` ("constant", the default, is the authors' loop: no schedule).
    ``spec_augment`` > 0 masks, in every batch, one band of up to that share of the time axis and of
    the frequency axis of each clip's features (SpecAugment; 0, the default, is the authors' loop).
    ``batchnorm`` "frozen" keeps every BatchNorm layer in eval mode while fine-tuning: batches are
    normalised with the backdoored model's running statistics, which stay as they were, and only
    the affine weights train ("train", the default, is the authors' loop: batch statistics, running
    statistics updated by each step's unperturbed pass).
    """

    clean_ratio: float = 0.05
    epochs: int = 300
    batch_size: int = 256
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0
    max_grad_norm: float = 0.0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_epochs: int = 0
    spec_augment: float = 0.0
    batchnorm: Literal["train", "frozen"] = "train"
    eval_every: int = 10
    grad_norm_every: int = 1
    seed: int = 0
    device: str = "auto"
    amp: Literal["none", "bf16"] = "none"
    compile: bool = False
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"

    def validate(self) -> None:
        if not 0 < self.clean_ratio <= 1:
            raise ConfigError(f"clean_ratio must be in (0, 1], got {self.clean_ratio}")
        if self.epochs < 0 or self.batch_size < 1 or self.eval_every < 1:
            raise ConfigError("epochs must be >= 0, batch_size and eval_every at least 1")
        if self.grad_norm_every < 0:
            raise ConfigError(f"grad_norm_every must be >= 0 (0: never), got {self.grad_norm_every}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if not (math.isfinite(self.momentum) and self.momentum >= 0):
            raise ConfigError(f"momentum must be a number >= 0, got {self.momentum}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be a number >= 0, got {self.weight_decay}")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm >= 0):
            raise ConfigError(f"max_grad_norm must be >= 0 (0: no clipping), got {self.max_grad_norm}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if not 0 <= self.warmup_epochs <= max(self.epochs, 0):
            raise ConfigError(f"warmup_epochs must be between 0 and epochs ({self.epochs}), got {self.warmup_epochs}")
        if not 0 <= self.spec_augment < 1:
            raise ConfigError(f"spec_augment is the widest masked share of an axis, in [0, 1), got {self.spec_augment}")
        if self.batchnorm not in ("train", "frozen"):
            raise ConfigError(f"batchnorm must be 'train' or 'frozen', got {self.batchnorm!r}")
        if self.amp not in ("none", "bf16"):
            raise ConfigError(f"amp must be none or bf16, got {self.amp!r}")
        check_memory_format(self.memory_format)


#: One line per defense option, shown by ``python -m core.defend --help`` and as the GUI form's
#: tooltips (a test checks that every config field of every defense has one).
OPTION_HELP: dict[str, str] = {
    "clean_ratio": "share of the training split used as the clean fine-tuning set, class-stratified",
    "epochs": "passes over the clean set (at 5 % of a few thousand clips, one or two steps each)",
    "batch_size": "clips per step",
    "lr": "SGD learning rate",
    "momentum": "SGD momentum",
    "weight_decay": "SGD weight decay",
    "max_grad_norm": "clip each step's gradient to this global L2 norm; 0 = no clipping (the authors' code)",
    "lr_schedule": "constant (the authors' loop) or cosine towards 0 over the run, per step",
    "warmup_epochs": "epochs of linear lr warm-up before the schedule",
    "spec_augment": "SpecAugment: mask one band of up to this share of each clip's time and frequency axes "
                    "per batch; 0 = off",
    "batchnorm": "train (the authors' loop: batch statistics, running ones updated) or frozen "
                 "(BatchNorm in eval mode: running statistics normalise and stay)",
    "eval_every": "evaluate CA / ASR every this many epochs (and after the last)",
    "amp": "bf16 autocast for the passes (none = full float32)",
    "compile": "torch.compile the classifier (the first steps compile)",
    "memory_format": "layout of the conv weights while fine-tuning: auto (channels_last on CPU, where it is faster; "
                     "contiguous on a GPU), channels_last or contiguous; the result is handed back contiguous",
    "seed": "seed of the clean subset, batch order and dropout",
    "device": "auto, cpu or cuda",
    "grad_norm_every": "per-neuron gradient norms for a watching application every this many steps; 0 = never",
    "alpha": "GN-FT mixing weight of the perturbed gradient g2: g = (1-alpha) g1 + alpha g2",
    "r": "GN-FT perturbation radius: g2 is taken at theta + r g1 / ||g1||",
    "norm": "GN-FT normalisation of g1: per-tensor (the authors' code) or global (GNP)",
    "mix": "GN-FT mixes the raw g1 (the authors' code) or g1 normalised like the perturbation",
    "rho": "FT-SAM radius of the sharpness perturbation",
    "adaptive": "FT-SAM scales the perturbation by each weight's size (ASAM)",
    "prune_step": "Fine-Pruning: share of the last layer's inputs pruned per round",
    "max_accuracy_drop": "Fine-Pruning: stop pruning before clean accuracy falls by more than this",
    "u": "CLP: prune channels whose Lipschitz upper bound is u standard deviations above the layer mean",
}


#: The short human name of each option (the application's form labels; the unit after a comma).
OPTION_LABELS: dict[str, str] = {
    "clean_ratio": "Clean share, %",
    "epochs": "Epochs",
    "batch_size": "Batch size, clips",
    "lr": "Learning rate",
    "momentum": "Momentum",
    "weight_decay": "Weight decay",
    "max_grad_norm": "Gradient clip, L2 (0 = off)",
    "lr_schedule": "Learning-rate schedule",
    "warmup_epochs": "Warm-up, epochs",
    "spec_augment": "SpecAugment band, %",
    "batchnorm": "BatchNorm",
    "eval_every": "Evaluate every, epochs",
    "amp": "Mixed precision",
    "compile": "torch.compile",
    "memory_format": "Memory layout",
    "seed": "Seed",
    "device": "Device",
    "grad_norm_every": "Neuron norms every, steps",
    "alpha": "\u03b1, perturbed-gradient weight",
    "r": "r, perturbation radius",
    "norm": "Perturbation norm",
    "mix": "Gradient mix",
    "rho": "\u03c1, sharpness radius",
    "adaptive": "Adaptive (ASAM)",
    "prune_step": "Prune step, % per round",
    "max_accuracy_drop": "Max accuracy drop, %",
    "u": "u, Lipschitz threshold (std)",
}
#: Options that are shares of 1 in the config and shown in percent.
PERCENT_OPTIONS = frozenset({"clean_ratio", "spec_augment", "prune_step", "max_accuracy_drop"})
#: The few options that matter first (the rest sit under "Advanced" in the application).
PRIMARY_OPTIONS = ("clean_ratio", "epochs", "lr", "alpha", "r", "rho", "max_accuracy_drop", "u")


@dataclass
class DefenseResult:
    model: nn.Module
    cancelled: bool
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    clean_clips: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def train_mode(model: nn.Module, batchnorm: str = "train") -> nn.Module:
    """``model.train()``, with every BatchNorm layer back in eval mode when ``batchnorm`` is "frozen"
    (normalise with the running statistics and leave them alone; dropout still trains)."""
    model.train()
    if batchnorm == "frozen":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    return model


@torch.no_grad()
def clip_features(front: nn.Module, waves: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The front end's output for every clip (in eval mode), computed once for the whole run.

    The module's train/eval mode is left as it was found: analysis calls this on a loaded model."""
    if waves.shape[0] == 0:  # a data-free run: nothing to train on
        return waves
    was_training = front.training
    front.eval()
    try:
        return torch.cat([front(waves[i : i + batch_size]) for i in range(0, waves.shape[0], batch_size)])
    finally:
        front.train(was_training)


def mask_bands(x: torch.Tensor, width: float, generator: torch.Generator) -> torch.Tensor:
    """SpecAugment's masks on a batch: per clip, one band of up to ``width`` of each of the last two
    axes (frames and coefficients of [B, C, frames, coeffs] features; only time of a [B, T]
    waveform) is set to the clip's time average: a masked frame becomes the average frame, a
    masked coefficient its own mean level (MFCC coefficients differ in scale by two orders, so one
    scalar would be a loud artefact). Positions come from ``generator`` (CPU): a seeded run repeats."""
    time_axis = x.ndim - 2 if x.ndim >= 3 else x.ndim - 1
    fill = x.mean(time_axis, keepdim=True)
    out = x
    for axis in range(max(1, x.ndim - 2), x.ndim):
        n = x.shape[axis]
        sizes = (torch.rand(x.shape[0], generator=generator) * width * n).long()
        starts = (torch.rand(x.shape[0], generator=generator) * (n - sizes + 1)).long()
        pos = torch.arange(n)
        band = (pos >= starts[:, None]) & (pos < (starts + sizes)[:, None])
        shape = [x.shape[0]] + [1] * (x.ndim - 1)
        shape[axis] = n
        out = torch.where(band.view(shape).to(x.device), fill, out)
    return out


def clean_subset(data: AudioSet, ratio: float, seed: int, split: str = "train") -> torch.Tensor:
    """A seeded, class-stratified ``ratio`` share of ``split`` (at least one clip per class present)."""
    idx = data.splits[split].cpu()
    labels = data.labels.cpu()[idx]
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for c in labels.unique().tolist():
        rows = idx[labels == c]
        k = max(1, round(ratio * rows.numel()))
        chosen.append(rows[torch.randperm(rows.numel(), generator=gen)[:k]])
    return torch.cat(chosen).sort().values


class Defense:
    """Base class: subclasses set ``name`` and ``Config`` and implement :meth:`train_step`."""

    name: ClassVar[str] = ""
    Config: ClassVar[type[DefenseConfig]] = DefenseConfig
    #: False for a data-free defense: with ``epochs == 0`` it takes no clean clips at all.
    needs_data: ClassVar[bool] = True

    def __init__(self, config: DefenseConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self.config.validate()

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        c = self.config
        return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=c.lr, momentum=c.momentum,
                               weight_decay=c.weight_decay)

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate of 0-based ``step`` of the run: linear warm-up, then constant or cosine."""
        c = self.config
        warmup, total_steps = c.warmup_epochs * steps_per_epoch, c.epochs * steps_per_epoch
        if step < warmup:
            return c.lr * (step + 1) / warmup
        if c.lr_schedule == "constant":
            return c.lr
        return 0.5 * c.lr * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    def optimizer_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Apply the gradients in ``.grad``: clipped to ``max_grad_norm`` (global L2) when set."""
        if self.config.max_grad_norm > 0:
            nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None],
                                     self.config.max_grad_norm)
        optimizer.step()

    def prepare(self, model: nn.Module, waves: torch.Tensor, labels: torch.Tensor) -> None:
        """Work on the copy before fine-tuning starts (Fine-Pruning prunes here); default nothing."""

    def details(self) -> dict[str, Any]:
        """What the defense did beyond its config (e.g. how much it pruned), for reports."""
        return {}

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   optimizer: torch.optim.Optimizer) -> float:
        """One optimisation step on a batch; returns the loss. ``model`` is the classifier and ``x``
        its input features when the front end could be split off (see ``split_front_end``)."""
        raise NotImplementedError

    def clean_gradient(self) -> GradOf | None:
        """Where the last step's clean-loss gradient g1 is (default: each parameter's ``.grad``)."""
        return None

    def _grad_norms(self, model: nn.Module) -> dict[str, list[float]]:
        norms = neuron_grad_norms(model, self.clean_gradient())
        if not norms:
            return {}
        flat = torch.cat(list(norms.values())).cpu().tolist()  # one device sync for all layers
        out, start = {}, 0
        for name, t in norms.items():
            out[name] = flat[start : start + t.numel()]
            start += t.numel()
        return out

    def run(self, model: nn.Module, clean: AudioSet, observer: Observer | None = None, *,
            evaluate: Evaluator | None = None, indices: torch.Tensor | None = None) -> DefenseResult:
        """Repair a copy of ``model`` on ``clean_ratio`` of ``clean``'s training split (or ``indices``)."""
        observer = observer or NullObserver()
        c = self.config
        started = time.perf_counter()
        device = resolve_device(c.device)
        if not self.needs_data and c.epochs == 0:
            rows = torch.zeros(0, dtype=torch.long)
        else:
            rows = indices if indices is not None else clean_subset(clean, c.clean_ratio, c.seed)
        waves = clean.waves.index_select(0, rows.to(clean.waves.device)).to(device)
        labels = clean.labels.index_select(0, rows.to(clean.labels.device)).to(device)
        work = copy.deepcopy(model).to(device)
        self.prepare(work, waves, labels)
        optimizer = self.make_optimizer(work)
        front, body = split_front_end(work)
        body.to(memory_format=memory_format(c.memory_format, device))  # handed back contiguous below
        inputs = waves if front is None else clip_features(front, waves, c.batch_size)
        stepped = torch.compile(body) if c.compile else body  # shares body's parameters
        gen = torch.Generator().manual_seed(c.seed)
        mask_gen = torch.Generator().manual_seed(c.seed + 1)  # its own stream: batch order as without masks
        history: list[dict[str, Any]] = []
        steps_per_epoch = math.ceil(inputs.shape[0] / c.batch_size)
        want_norms = c.grad_norm_every > 0 and bool(getattr(observer, "wants_grad_norms", False))
        step = 0

        def measure(epoch: int) -> None:
            if evaluate is None:
                return
            metrics = evaluate(work.eval())
            history.append({"epoch": epoch, **metrics})
            observer.on_eval(EvalInfo(self.name, epoch, metrics.get("clean_accuracy", float("nan")),
                                      metrics.get("clean_loss"), metrics.get("attack_success_rate"),
                                      metrics.get("robust_accuracy")))

        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(c.seed)
                for epoch in range(1, c.epochs + 1):
                    train_mode(work, c.batchnorm)
                    order = torch.randperm(inputs.shape[0], generator=gen).to(device)
                    for start in range(0, order.numel(), c.batch_size):
                        if observer.should_stop():
                            raise Cancelled()
                        batch = order[start : start + c.batch_size]
                        lr = self.lr_at(step, steps_per_epoch)
                        for group in optimizer.param_groups:
                            group["lr"] = lr
                        x = inputs[batch]
                        if c.spec_augment > 0:
                            x = mask_bands(x, c.spec_augment, mask_gen)
                        with autocast(device, c.amp):
                            loss = self.train_step(stepped, x, labels[batch], optimizer)
                        step += 1
                        norms = (self._grad_norms(work) if want_norms and (step - 1) % c.grad_norm_every == 0
                                 else None)
                        observer.on_step(StepInfo(self.name, epoch, step, steps_per_epoch * c.epochs, loss, lr,
                                                  norms))
                    if epoch % c.eval_every == 0 or epoch == c.epochs:
                        measure(epoch)
                if c.epochs == 0:  # a pruning-only run is still measured
                    measure(0)
        except Cancelled:
            return DefenseResult(model, True, time.perf_counter() - started, history, int(rows.numel()), asdict(c))
        work.to(memory_format=torch.contiguous_format)
        return DefenseResult(work.eval(), False, time.perf_counter() - started, history, int(rows.numel()), asdict(c),
                             self.details())
