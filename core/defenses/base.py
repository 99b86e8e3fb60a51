"""The Defense interface: repair a copy of a model on a small clean set, reporting as it goes.

A defense never modifies the model it is given: it works on a deep copy, and a cancelled
run (the observer's ``should_stop``) returns the input object itself, untouched, with
``cancelled=True``. Hyperparameters are dataclasses with the paper's defaults.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as F

from core.analysis.grad_norms import GradOf, neuron_grad_norms
from core.data.audioset import AudioSet
from core.defenses.latent import LatentAdversary
from core.errors import ConfigError
from core.events import Cancelled, EvalInfo, NullObserver, Observer, StepInfo
from core.features import clip_features
from core.loop import Callback, Loop
from core.metrics import predict_logits
from core.models import split_front_end
from core.options import SEED_RANGE, SEED_TEXT, check_ranges, option
from core.runtime import resolve_device

__all__ = [
    "DefenseConfig",
    "DefenseResult",
    "Defense",
    "clean_subset",
    "clip_features",
    "mask_bands",
    "keep_pruned",
    "output_layer",
    "train_mode",
    "Evaluator",
    "EvaluateEvery",
    "HoldoutGuard",
    "accuracy",
    "add_trigger",
    "split_holdout",
]

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

    clean_ratio: float = option(
        0.05,
        label="Clean share, %",
        percent=True,
        primary=True,
        range="(0, 1]",
        help="share of the training split used as the clean fine-tuning set, class-stratified",
    )
    epochs: int = option(
        300,
        label="Epochs",
        primary=True,
        range="[0, inf)",
        help="passes over the clean set (at 5 % of a few thousand clips, one or two steps each)",
    )
    batch_size: int = option(256, label="Batch size, clips", range="[1, inf)", help="clips per step")
    lr: float = option(0.001, label="Learning rate", primary=True, range="(0, inf)", help="SGD learning rate")
    momentum: float = option(0.9, label="Momentum", range="[0, inf)", help="SGD momentum")
    weight_decay: float = option(0.0, label="Weight decay", range="[0, inf)", help="SGD weight decay")
    max_grad_norm: float = option(
        0.0,
        label="Gradient clip, L2 (0 = off)",
        range="[0, inf)",
        note="0: no clipping",
        help="clip each step's gradient to this global L2 norm; 0 = no clipping (the authors' code)",
    )
    lr_schedule: Literal["constant", "cosine"] = option(
        "constant",
        label="Learning-rate schedule",
        help="constant (the authors' loop) or cosine towards 0 over the run, per step",
    )
    warmup_epochs: int = option(0, label="Warm-up, epochs", help="epochs of linear lr warm-up before the schedule")
    spec_augment: float = option(
        0.0,
        label="SpecAugment band, %",
        percent=True,
        range="[0, 1)",
        note="the widest masked share of an axis",
        help="SpecAugment: mask one band of up to this share of each clip's time and frequency axes per batch; 0 = off",
    )
    batchnorm: Literal["train", "frozen"] = option(
        "train",
        label="BatchNorm",
        help="train (the authors' loop: batch statistics, running ones updated) or frozen "
        "(BatchNorm in eval mode: running statistics normalise and stay)",
    )
    head: Literal["keep", "reinit"] = option(
        "keep",
        label="Output layer",
        help="keep the output layer, or reinit it (seeded, PyTorch's default initialisation) before "
        "fine-tuning, so that the whole model re-learns the clean task (FT-init, after Min et al., "
        "NeurIPS 2023)",
    )
    head_shift: float = option(
        0.0,
        label="Head shift, weight",
        range="[0, inf)",
        note="0: off",
        help="weight of a term that turns the output layer's weight away from its direction before the repair "
        "(its inner product with that weight, the layer's norm held at the norm it had), so that the features, "
        "not only the head, must change and a backdoor's features are not simply read out again as accuracy "
        "returns (Feature Shift Tuning, after Min et al., NeurIPS 2023, with the output layer reinit; a kept layer "
        "starts along its old direction, where the term only shrinks it); 0 = off",
    )
    unlearn: float = option(
        0.0,
        label="Unlearn share, %",
        percent=True,
        range="[0, 1)",
        note="0: off; needs a trigger",
        help="share of each batch's clean clips given the suspected trigger (a scan's reconstruction or a "
        "recording) while keeping their true labels, so that fine-tuning unlearns it; 0 = off",
    )
    trigger_prune: float = option(
        0.0,
        label="Prune by trigger, max drop %",
        percent=True,
        range="[0, 1]",
        note="0: off; needs a trigger",
        help="before fine-tuning, zero the output layer's inputs that the suspected trigger raises most (on the "
        "clean clips, with the trigger against without) and hold them at zero, until the trigger no longer "
        "costs more than this share of accuracy or the clean accuracy would fall by more (Neural Cleanse's "
        "pruning, on the reconstructed trigger); 0 = off",
    )
    trigger_prune_when: Literal["always", "unflagged"] = option(
        "always",
        label="Prune by trigger when",
        help="always: prune by whatever trigger the repair has; unflagged: only by the trigger of a scan that "
        "flagged no class (its reconstruction is then a guess, and pruning what it raises cut the backdoor's "
        "return on the models where the scan was unsure, while it cost accuracy where the scan flagged)",
    )
    trigger_prune_gain: float = option(
        0.25,
        label="Prune by trigger: least gain, %",
        percent=True,
        range="[0, 1]",
        note="0: keep any pruning",
        help="undo the pruning by the trigger when it won back less than this share of the accuracy the trigger "
        "costs on the clean share: the trigger's path is not in the inputs it raises (on two ASC-10 ResNets, "
        "zeroing every input the trigger raised, half the layer, won back under 1 % and left more backdoor after "
        "the repair, 48 against 32 % ASR; on six SmallCNNs it won back 48-89 %); 0 = keep whatever it did",
    )
    unlearn_latent: float = option(
        0.0,
        label="Latent unlearn share, %",
        percent=True,
        range="[0, 1)",
        note="0: off",
        help="share of each batch pushed, at a hidden layer, by a bounded perturbation as far as it gets "
        "toward the suspected target class (the scan's), and trained to keep its true label: unlearns a "
        "backdoor whose trigger the scan cannot reconstruct; 0 = off",
    )
    unlearn_top: int = option(
        1,
        label="Suspected classes if unflagged",
        range="[1, inf)",
        help="when the scan flags nothing, unlearn the reconstructed triggers of, and push toward, this many "
        "classes, those its pooled anomaly index ranks first (1: the one class the scan points at); a flagged "
        "class, or one the user names, is unlearned alone",
    )
    unlearn_refresh: int = option(
        0,
        label="Re-search trigger, epochs",
        range="[0, inf)",
        note="0: off; needs unlearn",
        help="every this many epochs, search the suspected class's audible trigger again on the model being "
        "repaired (the scan's search, that class alone) and unlearn it too: once the first reconstruction is "
        "unlearned, what still sends clips to the class is searched for; 0 = off",
    )
    unlearn_refresh_when: Literal["always", "flagged"] = option(
        "always",
        label="Re-search trigger when",
        help="always: search again whatever the scan said; flagged: only when the scan that found the trigger "
        "flagged its class (a confident class: its backdoor, gone early, comes back as the accuracy does, and the "
        "searches bring it down again; a guessed class's searches cost accuracy for nothing)",
    )
    rescan_passes: int = option(
        0,
        label="Repair again if flagged, passes",
        range="[0, inf)",
        note="0: off; needs unlearning",
        help="after the repair, scan the repaired model and, when the scan flags a class the repair did not "
        "unlearn, repair it again unlearning that class's trigger, at most this many more times (each time a "
        "scan and a whole run more): a first scan that points at a wrong class without flagging it can flag the "
        "right one once its guess is unlearned (one ASC-10 SmallCNN: 70.7 -> 8.5 % ASR); 0 = off",
    )
    latent_radius: float = option(
        0.5,
        label="Latent push radius",
        range="(0, inf)",
        help="largest latent push per clip, relative to the clip's activation norm at that layer",
    )
    latent_reach: float = option(
        0.0,
        label="Latent push reach, %",
        percent=True,
        range="[0, 1)",
        note="0: the radius as set",
        help="instead of a fixed radius, the one at which the push sends this share of the clean clips to its "
        "class on the model before fine-tuning (bisection over 0.01-2, per model): a deep ResNet's last layer "
        "is pushed anywhere at 0.5, a SmallCNN's half the time; 0 = use the latent push radius",
    )
    latent_recalibrate: int = option(
        0,
        label="Latent reach again, epochs",
        range="[0, inf)",
        note="0: off; needs the reach",
        help="every this many epochs, set the push's radius again so that it reaches the latent push reach's "
        "share of the clean clips on the model being repaired: the model soon resists the first radius (an ASC-10 "
        "SmallCNN's pushes reach their class 2 % of the time over the run against 20 % at its start), and the "
        "push then stops pressing; 0 = the radius set before fine-tuning throughout",
    )
    latent_growth: float = option(
        0.0,
        label="Latent reach again, at most x",
        range="[0, inf)",
        note="0: up to 2",
        help="with latent reach again: the largest radius it may set, as a multiple of the one set before "
        "fine-tuning (on one ASC-10 ResNet the push grown to 2 cost 10 points of accuracy, held within twice "
        "the first still 9); 0 = up to the bisection's bound, 2",
    )
    latent_recalibrate_on: Literal["any", "linear"] = option(
        "any",
        label="Latent reach again, on",
        help="with latent reach again: on any pushed layer, or only where it is fully connected (linear); on "
        "the ASC-10 ResNet, whose push is at its last convolution, followed only by pooling and the output layer, "
        "every growth of the radius cost 9-10 points of accuracy, while the SmallCNNs' (a linear layer, then a "
        "ReLU) kept theirs",
    )
    latent_depth: float = option(
        1.0,
        label="Latent layer depth",
        range="[0, 1]",
        help="which hidden layer is pushed: 0 the first conv or linear layer, 1 the last before the output "
        "(the least costly in CA on the ASC-10 SmallCNN)",
    )
    latent_steps: int = option(3, label="Latent push steps", range="[1, inf)", help="gradient steps per push")
    latent_target: Literal["suspected", "any"] = option(
        "suspected",
        label="Latent push toward",
        help="suspected (the class the scan points at) or any (away from each clip's own label, toward "
        "whichever class is nearest: for when the scan may point at the wrong class)",
    )
    latent_several: Literal["draw", "nearest"] = option(
        "draw",
        label="Several classes: push toward",
        help="with several suspected classes (unlearn_top above 1), push each clip toward one drawn at random "
        "(draw) or toward whichever of them the push reaches most easily (nearest: a backdoor's target is the "
        "class a small latent push reaches first)",
    )
    distill: float = option(
        0.0,
        label="Keep clean outputs, weight",
        range="[0, inf)",
        note="0: off",
        help="weight of a distillation term that keeps the repaired model's outputs on the clean clips of each "
        "batch (not those given a trigger or a push) close to the model's own before the repair (KL "
        "divergence to its softmax): holds the clean behaviour, and slows the unlearning about as much; 0 = off",
    )
    holdout: float = option(
        0.0,
        label="Held-out share, %",
        percent=True,
        range="[0, 0.9]",
        note="0: none",
        help="share of the clean set held out (class-stratified) and never trained on: its CA before and "
        "after the repair is measured with no trigger known; 0 = none",
    )
    max_ca_drop: float = option(
        0.0,
        label="Max held-out CA drop, %",
        percent=True,
        range="[0, 1]",
        note="0: off",
        help="keep the last evaluated state whose held-out CA is within this many points of the model's "
        "before the repair, instead of the last epoch (needs a held-out share); 0 = off",
    )
    eval_every: int = option(
        10,
        label="Evaluate every, epochs",
        range="[1, inf)",
        help="evaluate CA / ASR every this many epochs (and after the last)",
    )
    grad_norm_every: int = option(
        1,
        label="Neuron norms every, steps",
        hidden=True,
        range="[0, inf)",
        note="0: never",
        help="per-neuron gradient norms for a watching application every this many steps; 0 = never",
    )
    seed: int = option(
        0,
        label="Seed",
        hidden=True,
        help="seed of the clean subset, batch order and dropout",
        range=SEED_RANGE,
        range_text=SEED_TEXT,
    )
    device: str = option("auto", label="Device", hidden=True, help="auto, cpu or cuda")
    amp: Literal["none", "bf16"] = option(
        "none", label="Mixed precision", help="bf16 autocast for the passes (none = full float32)"
    )
    compile: bool = option(False, label="torch.compile", help="torch.compile the classifier (the first steps compile)")
    memory_format: Literal["auto", "channels_last", "contiguous"] = option(
        "auto",
        label="Memory layout",
        help="layout of the conv weights while fine-tuning: auto (channels_last on a CPU, with exact "
        "BatchNorm: the fastest there; contiguous on a GPU), channels_last or contiguous; the result is "
        "handed back contiguous",
    )

    #: settings that only act with ``unlearn_latent`` > 0
    LATENT_FIELDS: ClassVar[tuple[str, ...]] = (
        "latent_radius",
        "latent_reach",
        "latent_recalibrate",
        "latent_growth",
        "latent_recalibrate_on",
        "latent_depth",
        "latent_steps",
        "latent_target",
        "latent_several",
    )

    def idle_fields(self) -> set[str]:
        """Settings that change nothing in this config (the latent push's while it is off, the number of
        suspected classes while nothing is unlearned, the trigger's new searches while no trigger is): a grid
        cell made with other values of these is still this config's."""
        idle = set(self.LATENT_FIELDS) if self.unlearn_latent == 0 else set()
        if self.unlearn_top == 1:
            idle.add("latent_several")
        if self.latent_reach == 0:
            idle.add("latent_recalibrate")
        if self.latent_reach == 0 or self.latent_recalibrate == 0:
            idle |= {"latent_growth", "latent_recalibrate_on"}
        if self.unlearn == 0:
            idle.add("unlearn_refresh")
        if self.unlearn == 0 or self.unlearn_refresh == 0:
            idle.add("unlearn_refresh_when")
        if self.trigger_prune == 0:
            idle |= {"trigger_prune_when", "trigger_prune_gain"}
        return idle if self.unlearns() else idle | {"unlearn_top", "rescan_passes"}

    def unlearns(self) -> bool:
        """True when the run acts on a suspected backdoor (unlearns a trigger, pushes toward its class, or
        prunes what the trigger raises): a repair then needs the trigger, a scan's or a recording."""
        return self.unlearn > 0 or self.unlearn_latent > 0 or self.trigger_prune > 0

    def validate(self) -> None:
        """Every declared range and choice (:func:`core.options.check_ranges`), then the warm-up."""
        check_ranges(self)
        if not 0 <= self.warmup_epochs <= max(self.epochs, 0):
            raise ConfigError(f"warmup_epochs must be between 0 and epochs ({self.epochs}), got {self.warmup_epochs}")
        if self.head == "reinit" and self.epochs == 0:
            raise ConfigError("head reinit needs fine-tuning to re-learn the output layer: set epochs >= 1")
        if self.unlearn > 0 and self.epochs == 0:
            raise ConfigError("unlearn needs fine-tuning to unlearn the trigger with: set epochs >= 1")
        if self.unlearn_latent > 0 and self.epochs == 0:
            raise ConfigError("unlearn_latent needs fine-tuning to unlearn with: set epochs >= 1")
        if self.trigger_prune > 0 and self.epochs == 0:
            raise ConfigError("trigger_prune needs fine-tuning to recover the pruned model: set epochs >= 1")
        if self.head_shift > 0 and self.epochs == 0:
            raise ConfigError("head_shift needs fine-tuning to turn the output layer in: set epochs >= 1")
        if self.distill > 0 and self.epochs == 0:
            raise ConfigError("distill needs fine-tuning to act in: set epochs >= 1")
        if self.max_ca_drop > 0 and self.holdout == 0:
            raise ConfigError("max_ca_drop needs a held-out share to measure on: set holdout too (e.g. 0.2)")


@dataclass
class DefenseResult:
    model: nn.Module
    cancelled: bool
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    clean_clips: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def output_layer(model: nn.Module) -> nn.Linear:
    """The model's output layer (``classifier.fc``, or ``fc`` of a bare classifier)."""
    layer = dict(model.named_modules()).get("classifier.fc") or dict(model.named_modules()).get("fc")
    if not isinstance(layer, nn.Linear):
        raise ConfigError("this defense needs the model's output layer classifier.fc to be a Linear layer")
    return layer


def keep_pruned(model: nn.Module, mask: torch.Tensor | None) -> None:
    """Put the pruned output-layer columns (``mask`` False) back to zero after an optimiser step."""
    if mask is not None:
        with torch.no_grad():
            output_layer(model).weight.mul_(mask)


def train_mode(model: nn.Module, batchnorm: str = "train") -> nn.Module:
    """``model.train()``, with every BatchNorm layer back in eval mode when ``batchnorm`` is "frozen"
    (normalise with the running statistics and leave them alone; dropout still trains)."""
    model.train()
    if batchnorm == "frozen":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    return model


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


def add_trigger(waves: torch.Tensor, trigger: torch.Tensor) -> torch.Tensor:
    """``waves`` [N, T] with ``trigger`` (a waveform) added from each clip's start, cropped or zero-padded
    to T, clamped to [-1, 1]: how a scan's reconstructed trigger is applied (see
    :func:`core.scan.trigger_success`)."""
    n = waves.shape[-1]
    delta = torch.zeros(n, device=waves.device, dtype=waves.dtype)
    part = trigger.detach().reshape(-1)[:n].to(waves.device, waves.dtype)
    delta[: part.numel()] = part
    return (waves + delta).clamp(-1.0, 1.0)


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


def split_holdout(
    rows: torch.Tensor, labels: torch.Tensor, share: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` split class-stratified into (fine-tuning rows, held-out rows): ``share`` of each class held
    out (rounded, at least one where the class has two clips or more, never its last one); ``labels`` are
    the labels of ``rows``. Seeded by ``seed``: the same clean set gives the same split."""
    gen = torch.Generator().manual_seed((seed + 2) % 2**64)
    kept, held = [], []
    for c in labels.unique().tolist():
        members = rows[labels == c]
        members = members[torch.randperm(members.numel(), generator=gen)]
        k = min(members.numel() - 1, max(1, round(share * members.numel()))) if members.numel() > 1 else 0
        held.append(members[:k])
        kept.append(members[k:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Share of ``x`` (a model's inputs, [N, ...]) that ``model`` classifies as ``y``, in eval mode."""
    modes = [(m, m.training) for m in model.modules()]  # frozen BatchNorms stay as they were
    model.eval()
    right = 0
    for start in range(0, x.shape[0], batch_size):
        right += int((model(x[start : start + batch_size]).argmax(1) == y[start : start + batch_size]).sum())
    for m, mode in modes:
        m.training = mode
    return right / max(1, x.shape[0])


class Defense:
    """Base class: subclasses set ``name`` and ``Config`` and implement :meth:`train_step`."""

    name: ClassVar[str] = ""
    Config: ClassVar[type[DefenseConfig]] = DefenseConfig
    #: False for a data-free defense: with ``epochs == 0`` it takes no clean clips at all.
    needs_data: ClassVar[bool] = True

    def __init__(self, config: DefenseConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self.config.validate()
        #: during a step with ``distill`` > 0: the model's own softmax before the repair for the batch
        #: ``[B, K']`` (over the classes in ``_free``) and which rows are clean ``[B]`` (neither triggered nor
        #: pushed); None otherwise
        self._kept: tuple[torch.Tensor, torch.Tensor] | None = None
        #: the classes whose outputs are distilled (all but the suspected ones), None for all
        self._free: torch.Tensor | None = None
        #: with ``trigger_prune`` > 0: the output-layer inputs kept ``[in_features]`` (bool), held after each step
        self._trigger_mask: torch.Tensor | None = None
        #: with ``head_shift`` > 0: (the output layer being trained, its weight before the repair, that weight's
        #: norm), for :meth:`optimizer_step`
        self._shift: tuple[nn.Linear, torch.Tensor, torch.Tensor] | None = None

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch: cross-entropy to ``y``, plus, with ``distill`` > 0, that weight
        times the KL divergence from the model's own outputs before the repair on the batch's clean rows."""
        ce = F.cross_entropy(logits, y)
        if self._kept is None:
            return ce
        before, clean_rows = self._kept
        if not bool(clean_rows.any()):
            return ce
        kept = logits[clean_rows]
        if self._free is not None:  # the suspected classes' outputs are not held: only the others' shares
            kept = kept[:, self._free]
        kl = F.kl_div(F.log_softmax(kept, -1), before[clean_rows], reduction="batchmean")
        return ce + self.config.distill * kl

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        c = self.config
        return torch.optim.SGD(
            [p for p in model.parameters() if p.requires_grad],
            lr=c.lr,
            momentum=c.momentum,
            weight_decay=c.weight_decay,
        )

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
            nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], self.config.max_grad_norm)
        if self._shift is not None:  # d/dw of head_shift * <w, w0>: a constant added to the head's gradient
            head, w0, norm = self._shift
            if head.weight.grad is not None:
                head.weight.grad.add_(w0, alpha=self.config.head_shift)
        optimizer.step()
        keep_pruned(model, self._trigger_mask)
        if self._shift is not None:  # the norm held at the norm before the repair (FST's constraint)
            with torch.no_grad():
                head.weight.mul_(norm / head.weight.norm().clamp_min(1e-12))

    def prepare(self, model: nn.Module, waves: torch.Tensor, labels: torch.Tensor) -> None:
        """Work on the copy before fine-tuning starts (Fine-Pruning prunes here); default nothing."""

    def details(self) -> dict[str, Any]:
        """What the defense did beyond its config (e.g. how much it pruned), for reports."""
        return {}

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer) -> float:
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

    def run(
        self,
        model: nn.Module,
        clean: AudioSet,
        observer: Observer | None = None,
        *,
        evaluate: Evaluator | None = None,
        indices: torch.Tensor | None = None,
        trigger: torch.Tensor | None = None,
        target: int | list[int] | None = None,
        refresh: Callable[[nn.Module, int], tuple[torch.Tensor, dict[str, Any]]] | None = None,
        flagged: bool | None = None,
    ) -> DefenseResult:
        """Repair a copy of ``model`` on ``clean_ratio`` of ``clean``'s training split (or ``indices``).

        The fine-tuning is :class:`core.loop.Loop` over the clip features (computed once); the
        evaluations every ``eval_every`` epochs and the gradient-norm snapshots are its callbacks.
        With ``unlearn`` > 0, that share of each batch is replaced by the same clips with ``trigger``
        (a waveform [T], :func:`add_trigger`; or [k, T], several suspected triggers, one drawn per clip and
        step) and their true labels; with ``unlearn_latent`` > 0, that share is pushed at a hidden layer toward
        ``target`` (the suspected class, or one drawn per clip from several; away from the true label when
        None) and trained to keep its label (:class:`core.defenses.latent.LatentAdversary`). With
        ``unlearn_refresh`` > 0, ``refresh(model, epoch)`` (the model being repaired, whole; not to be changed)
        is called every that many epochs before the last and its trigger(s) (``[T]`` or ``[k, T]``) join those
        unlearned from the next epoch on; the dict it returns with them (what was found) goes into that search's
        entry of ``details["searched_again"]``. ``flagged`` says whether the scan that found ``trigger`` flagged
        the model (None: the trigger was given); with ``trigger_prune_when`` "unflagged" only False prunes, with
        ``unlearn_refresh_when`` "flagged" only True searches again."""
        observer = observer or NullObserver()
        c = self.config
        if c.unlearn > 0 and trigger is None:
            raise ConfigError(
                "unlearn needs a trigger to unlearn: a scan's reconstructed trigger or a recording (or set unlearn 0)"
            )
        if c.trigger_prune > 0 and trigger is None:
            raise ConfigError(
                "trigger_prune needs a trigger to prune by: a scan's reconstructed trigger or a recording "
                "(or set trigger_prune 0)"
            )
        if c.unlearn > 0 and c.unlearn_refresh > 0 and refresh is None:
            raise ConfigError(
                "unlearn_refresh needs the class the trigger sends clips to, to search it again: name the class or "
                "let a scan find it (or set unlearn_refresh 0)"
            )
        started = time.perf_counter()
        device = resolve_device(c.device)
        if not self.needs_data and c.epochs == 0:
            rows = torch.zeros(0, dtype=torch.long)
        else:
            rows = indices if indices is not None else clean_subset(clean, c.clean_ratio, c.seed)
        held_rows = rows[:0]
        if c.holdout > 0 and rows.numel() > 0:
            rows, held_rows = split_holdout(rows, clean.labels.cpu()[rows], c.holdout, c.seed)
            if held_rows.numel() == 0:
                raise ConfigError(
                    f"holdout: the clean set ({rows.numel()} clips) has too few clips a class to hold "
                    f"{100 * c.holdout:g} % out; raise clean_ratio or set holdout 0"
                )
        waves = clean.waves.index_select(0, rows.to(clean.waves.device)).to(device)
        labels = clean.labels.index_select(0, rows.to(clean.labels.device)).to(device)
        work = copy.deepcopy(model).to(device)
        front, body = split_front_end(work)
        guard = None
        if held_rows.numel() > 0:
            held_waves = clean.waves.index_select(0, held_rows.to(clean.waves.device)).to(device)
            held_x = held_waves if front is None else clip_features(front, held_waves, c.batch_size)
            held_y = clean.labels.index_select(0, held_rows.to(clean.labels.device)).to(device)
            guard = HoldoutGuard(body, held_x, held_y, c.max_ca_drop, c.eval_every, c.batch_size)
        before, self._free = None, None
        if c.distill > 0:  # the model's own outputs on the clean clips, before any pruning or step
            logits = predict_logits(body, waves if front is None else clip_features(front, waves, c.batch_size))
            if target is not None:  # a backdoor raises its class on clean clips too: that share is not kept
                suspected = torch.tensor([target] if isinstance(target, int) else list(target), device=logits.device)
                free = torch.ones(logits.shape[1], dtype=torch.bool, device=logits.device)
                free[suspected] = False
                self._free = free.nonzero().flatten()
                logits = logits[:, self._free]
            before = logits.softmax(-1)
        self.prepare(work, waves, labels)
        optimizer = self.make_optimizer(work)
        front, body = split_front_end(work)
        inputs = waves if front is None else clip_features(front, waves, c.batch_size)
        mask_gen = torch.Generator().manual_seed((c.seed + 1) % 2**64)  # its own stream (seeds are 64 bits)
        triggered = None

        def with_triggers(trigger: torch.Tensor) -> torch.Tensor:
            """The clean clips with each trigger (``[T]`` or ``[k, T]``) added, as the model's inputs."""
            patterns = trigger.reshape(-1, trigger.shape[-1]) if trigger.ndim > 1 else trigger.reshape(1, -1)
            mixes = [add_trigger(waves, t) for t in patterns]
            return torch.stack([m if front is None else clip_features(front, m, c.batch_size) for m in mixes])

        if c.unlearn > 0 and trigger is not None:
            triggered = with_triggers(trigger)
            unlearn_gen = torch.Generator().manual_seed((c.seed + 4) % 2**64)
        self._trigger_mask, trigger_pruned = None, None
        if c.trigger_prune > 0 and c.trigger_prune_when == "unflagged" and flagged is not False:
            why = "the scan flagged the model" if flagged else "the trigger was given, not scanned"
            trigger_pruned = {"skipped": why}
        elif c.trigger_prune > 0 and trigger is not None:
            from core.defenses.fine_pruning import prune_trigger_inputs  # it builds on this module

            shown = triggered if triggered is not None else with_triggers(trigger)
            self._trigger_mask, trigger_pruned = prune_trigger_inputs(
                body, inputs, shown.flatten(0, 1), labels, 0.01, c.trigger_prune, c.trigger_prune_gain
            )
        adversary = None
        if c.unlearn_latent > 0:
            adversary = LatentAdversary(
                body, c.latent_depth, c.unlearn_latent, c.latent_radius, c.latent_steps,
                target if c.latent_target == "suspected" else None,
                torch.Generator().manual_seed((c.seed + 5) % 2**64), nearest=c.latent_several == "nearest",
            )  # fmt: skip
            if c.latent_reach > 0:  # after the pruning: the radius of the model that is fine-tuned
                adversary.calibrate(body, inputs, labels, c.latent_reach)

        # the output layer is re-initialised last: the trigger's pruning and the push's radius read the model's own
        self._shift = None
        if c.head_shift > 0:
            w0 = output_layer(work).weight.detach().clone()
            self._shift = (output_layer(work), w0, w0.norm())
        if c.head == "reinit":
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed((c.seed + 3) % 2**64)
                output_layer(work).reset_parameters()
                keep_pruned(work, self._trigger_mask)

        searches: list[dict[str, Any]] = []

        def search_again(epoch: int) -> None:
            """The trigger(s) ``refresh`` finds on the model as it is now join those unlearned."""
            nonlocal triggered
            found, about = refresh(work, epoch)
            searches.append({"epoch": epoch, "triggers": 1 if found.ndim == 1 else int(found.shape[0]), **about})
            triggered = torch.cat([triggered, with_triggers(found)])

        def step(module: nn.Module, batch: torch.Tensor) -> float:
            x = inputs[batch]
            clean_rows = torch.ones(batch.numel(), dtype=torch.bool)
            if triggered is not None:
                picked = torch.rand(batch.numel(), generator=unlearn_gen) < c.unlearn
                if bool(picked.any()):
                    which = torch.zeros(batch.numel(), dtype=torch.long)  # one trigger: the stream as before
                    if triggered.shape[0] > 1:
                        which = torch.randint(triggered.shape[0], (batch.numel(),), generator=unlearn_gen)
                    pattern = triggered[which.to(triggered.device), batch.to(triggered.device)]
                    x = torch.where(picked.to(x.device).view(-1, *[1] * (x.ndim - 1)), pattern, x)
                    clean_rows &= ~picked
            if c.spec_augment > 0:
                x = mask_bands(x, c.spec_augment, mask_gen)
            if adversary is not None:
                adversary.perturb(module, x, labels[batch])
                train_mode(work, c.batchnorm)
                clean_rows &= ~adversary.pushed_rows(batch.numel())
            if before is not None:
                self._kept = (before[batch.to(before.device)], clean_rows.to(before.device))
            try:
                return self.train_step(module, x, labels[batch], optimizer)
            finally:
                self._kept = None
                if adversary is not None:
                    adversary.clear()

        schedule = EvaluateEvery(c.eval_every, evaluate, work, self.name, observer)
        callbacks: list[Callback] = [schedule]
        if guard is not None:
            guard.start(body)  # after prepare: a pruned model is epoch 0's state
            callbacks.append(guard)
        refresh_skipped = None
        if triggered is not None and c.unlearn_refresh > 0 and refresh is not None:
            if c.unlearn_refresh_when == "flagged" and flagged is not True:
                why = "the trigger was given, not scanned" if flagged is None else "the scan flagged no class"
                refresh_skipped = why
            else:
                callbacks.append(_EveryEpochs(c.unlearn_refresh, search_again))
        if (
            adversary is not None
            and c.latent_reach > 0
            and c.latent_recalibrate > 0
            and adversary.recalibrates(c.latent_recalibrate_on)
        ):
            high = 2.0 if c.latent_growth == 0 else min(2.0, c.latent_growth * adversary.radius)

            def reach_again(epoch: int) -> float:
                """The push's radius bisected again on the model being repaired (no random numbers drawn)."""
                return adversary.calibrate(body, inputs, labels, c.latent_reach, min(0.01, high / 2), high, epoch)

            callbacks.append(_EveryEpochs(c.latent_recalibrate, reach_again))
        if c.grad_norm_every > 0 and bool(getattr(observer, "wants_grad_norms", False)):
            callbacks.append(_GradNormSnapshots(self, work, c.grad_norm_every))
        loop = Loop(
            self.name,
            body,
            step,
            int(inputs.shape[0]),
            epochs=c.epochs,
            batch_size=c.batch_size,
            device=device,
            order=torch.Generator().manual_seed(c.seed),
            amp=c.amp,
            compile=c.compile,
            layout=c.memory_format,
            optimizer=optimizer,
            lr_at=self.lr_at,
            train_mode=lambda: train_mode(work, c.batchnorm),
            observer=observer,
            callbacks=callbacks,
        )
        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(c.seed)
                loop.run()
                if c.epochs == 0:  # a pruning-only run is still measured
                    schedule.measure(0)
        except Cancelled:
            return DefenseResult(
                model, True, time.perf_counter() - started, schedule.history, int(rows.numel()), asdict(c)
            )
        finally:
            self._shift = None
            if adversary is not None:
                adversary.remove()
        details = self.details()
        if trigger_pruned is not None:
            details["trigger_pruned"] = trigger_pruned
        if adversary is not None:
            details["latent"] = adversary.details()
        if guard is not None:
            details["holdout"] = guard.finish(schedule.history)
        if searches:
            details["searched_again"] = searches
        if refresh_skipped:
            details["searched_again_skipped"] = refresh_skipped
        return DefenseResult(
            work.eval(),
            False,
            time.perf_counter() - started,
            schedule.history,
            int(rows.numel() + held_rows.numel()),
            asdict(c),
            details,
        )


class _EveryEpochs(Callback):
    """Call ``act(epoch)`` every ``every`` epochs before the last (what it changes, a trigger found again or the
    latent push's radius, still has epochs to act in); the loop puts the model back in training mode at the next
    epoch's start."""

    def __init__(self, every: int, act: Callable[[int], Any]) -> None:
        self.every, self.act = every, act

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        if epoch % self.every == 0 and epoch < loop.epochs:
            self.act(epoch)


class EvaluateEvery(Callback):
    """Measure the model every ``every`` epochs and after the last one; keeps the rows in ``history``
    and tells the observer (an :class:`EvalInfo` per evaluation). ``evaluate`` None: nothing."""

    def __init__(
        self, every: int, evaluate: Evaluator | None, model: nn.Module, phase: str, observer: Observer
    ) -> None:
        self.every, self.evaluate, self.model, self.phase, self.observer = every, evaluate, model, phase, observer
        self.history: list[dict[str, Any]] = []

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        if epoch % self.every == 0 or epoch == loop.epochs:
            self.measure(epoch)

    def measure(self, epoch: int) -> None:
        if self.evaluate is None:
            return
        metrics = self.evaluate(self.model.eval())
        self.history.append({"epoch": epoch, **metrics})
        self.observer.on_eval(
            EvalInfo(
                self.phase,
                epoch,
                metrics.get("clean_accuracy", float("nan")),
                metrics.get("clean_loss"),
                metrics.get("attack_success_rate"),
                metrics.get("robust_accuracy"),
            )
        )


class HoldoutGuard(Callback):
    """CA on the held-out clean clips, before the repair and at every evaluation; with ``max_drop`` > 0
    the model ends in the last evaluated state whose held-out CA is within ``max_drop`` of the CA before
    (the best one when none is), instead of the last epoch's. Needs no trigger."""

    def __init__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, max_drop: float, every: int, batch_size: int
    ) -> None:
        self.model, self.x, self.y, self.max_drop, self.every, self.batch_size = (
            model,
            x,
            y,
            max_drop,
            every,
            batch_size,
        )
        self.before = accuracy(model, x, y, batch_size)  # the model as given, before prepare
        self.rows: list[dict[str, float]] = []
        self.kept: tuple[int, float, dict[str, torch.Tensor]] | None = None  # (epoch, CA, state) within the bound
        self.best: tuple[int, float, dict[str, torch.Tensor]] | None = None  # the highest CA, when none is within

    def start(self, model: nn.Module) -> None:
        """Measure the state fine-tuning starts from (epoch 0; after pruning, for Fine-Pruning)."""
        self.model = model
        self._measure(0)

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        if epoch % self.every == 0 or epoch == loop.epochs:
            self._measure(epoch)

    def _measure(self, epoch: int) -> None:
        ca = accuracy(self.model, self.x, self.y, self.batch_size)
        self.rows.append({"epoch": epoch, "accuracy": ca})
        if self.max_drop <= 0:
            return
        state = None
        if ca >= self.before - self.max_drop - 1e-12:
            state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.kept = (epoch, ca, state)
        if self.best is None or ca > self.best[1]:
            state = state or {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.best = (epoch, ca, state)

    def finish(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        """Restore the kept state (when guarding), add ``holdout_accuracy`` to the matching ``history``
        rows and return the record for the report."""
        by_epoch = {r["epoch"]: r["accuracy"] for r in self.rows}
        for row in history:
            if row.get("epoch") in by_epoch:
                row["holdout_accuracy"] = by_epoch[row["epoch"]]
        record: dict[str, Any] = {
            "clips": int(self.y.numel()),
            "accuracy_before": self.before,
            "evaluations": self.rows,
        }
        last_epoch, last_ca = self.rows[-1]["epoch"], self.rows[-1]["accuracy"]
        if self.max_drop <= 0:
            return {**record, "accuracy_after": last_ca, "kept_epoch": last_epoch}
        choice, within = (self.kept, True) if self.kept is not None else (self.best, False)
        assert choice is not None
        epoch, ca, state = choice
        if epoch != last_epoch:
            self.model.load_state_dict(state)
        return {
            **record,
            "max_ca_drop": self.max_drop,
            "accuracy_after": ca,
            "kept_epoch": epoch,
            "last_epoch": last_epoch,
            "within": within,
        }


class _GradNormSnapshots(Callback):
    """Per-neuron norms of the step's clean gradient g1, every ``every`` steps, into the step's event."""

    def __init__(self, defense: Defense, model: nn.Module, every: int) -> None:
        self.defense, self.model, self.every = defense, model, every

    def on_step(self, loop: Loop, info: StepInfo) -> None:
        if (info.step - 1) % self.every == 0:
            info.grad_norms = self.defense._grad_norms(self.model)
