"""Fine-Pruning (Liu et al., RAID 2018), as the GN-FT authors ran it: prune, then fine-tune.

The inputs of the classifier's output layer (``classifier.fc``) are ranked by their mean
activation on the clean set; the least active are pruned (their weight columns zeroed) in
steps of ``prune_step`` of the inputs for as long as clean accuracy on the clean set stays
within ``max_accuracy_drop`` of the unpruned model's. Then the model is fine-tuned on the
clean set with the pruned columns held at zero, so the checkpoint keeps its architecture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from core.defenses.base import keep_pruned, output_layer
from core.defenses.finetune import FineTune, FineTuneConfig
from core.metrics import accuracy, predict_logits
from core.options import option

__all__ = [
    "FinePruningConfig",
    "FinePruning",
    "keep_pruned",
    "output_layer_activations",
    "prune_output_layer",
    "prune_trigger_inputs",
]


@dataclass
class FinePruningConfig(FineTuneConfig):
    """Pruning schedule plus the fine-tuning settings (SGD, lr 0.01 like plain FT)."""

    prune_step: float = option(
        0.01,
        label="Prune step, % per round",
        percent=True,
        range="(0, 1]",
        help="Fine-Pruning: share of the last layer's inputs pruned per round",
    )
    max_accuracy_drop: float = option(
        0.1,
        label="Max accuracy drop, %",
        percent=True,
        primary=True,
        range="[0, 1]",
        help="Fine-Pruning: stop pruning before clean accuracy falls by more than this",
    )


def output_layer_activations(model: nn.Module, waves: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Mean input activation of each of the output layer's inputs over ``waves``: ``[in_features]``."""
    inputs, _ = _output_layer_inputs(model, waves, batch_size)
    return _mean_activation(inputs)


def _mean_activation(inputs: torch.Tensor) -> torch.Tensor:
    """Mean over clips of captured output-layer inputs ``[N, in_features]`` (zeros for no clips)."""
    return inputs.sum(0) / max(1, inputs.shape[0])


@torch.no_grad()
def _output_layer_inputs(
    model: nn.Module, waves: torch.Tensor, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """The output layer's inputs ``[N, in_features]`` and the model's logits ``[N, C]``, from one pass."""
    layer = output_layer(model)
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _m, args: captured.append(args[0].float()))
    try:
        logits = predict_logits(model, waves, batch_size)
    finally:
        handle.remove()
    return (torch.cat(captured) if captured else torch.zeros(0, layer.in_features)), logits


class _Trials:
    """Logits of the model with some output-layer inputs zeroed, for pruning trials. Only the output layer's
    weights change while pruning, so its inputs are computed once and each trial is one small matmul; a model
    that does more after that layer gets a full pass per trial."""

    def __init__(self, model: nn.Module, waves: torch.Tensor) -> None:
        self.model, self.waves, self.layer = model, waves, output_layer(model)
        self.inputs, self.logits = _output_layer_inputs(model, waves)
        self.original = self.layer.weight.detach().clone()
        self.bias = None if self.layer.bias is None else self.layer.bias.detach().float()
        self.cached = torch.allclose(
            F.linear(self.inputs, self.original.float(), self.bias), self.logits, rtol=1e-4, atol=1e-4
        )

    def __call__(self, keep: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, C]`` with the inputs where ``keep`` is False zeroed (the layer is left so)."""
        if self.cached:
            return F.linear(self.inputs, (self.original * keep).float(), self.bias)
        with torch.no_grad():
            self.layer.weight.copy_(self.original * keep)
        return predict_logits(self.model, self.waves)

    def apply(self, keep: torch.Tensor) -> None:
        with torch.no_grad():
            self.layer.weight.copy_(self.original * keep)


def prune_output_layer(
    model: nn.Module, waves: torch.Tensor, labels: torch.Tensor, step: float, max_drop: float
) -> torch.Tensor:
    """Zero the output layer's least active inputs (by mean activation on ``waves``), ``step`` of them per
    round, while accuracy on ``waves`` stays within ``max_drop`` of the unpruned model's; return the mask
    of the inputs kept ``[in_features]`` (bool). Fine-Pruning's pruning, also GN-FT's ``prune`` option."""
    trials = _Trials(model, waves)
    order = _mean_activation(trials.inputs).argsort()  # least active first
    base = accuracy(trials.logits, labels)
    width = trials.layer.in_features
    size = max(1, math.ceil(step * width))
    keep = torch.ones(width, dtype=torch.bool, device=trials.original.device)
    for k in range(size, width, size):
        trial = torch.ones_like(keep)
        trial[order[:k]] = False
        if accuracy(trials(trial), labels) < base - max_drop:
            break
        keep = trial
    trials.apply(keep)
    return keep


def prune_trigger_inputs(
    model: nn.Module,
    clean: torch.Tensor,
    triggered: torch.Tensor,
    labels: torch.Tensor,
    step: float,
    max_drop: float,
    min_gain: float = 0.0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Zero the output layer's inputs that a suspected trigger raises most, ``step`` of them per round, until
    the trigger costs no more than ``max_drop`` of accuracy or the clean accuracy would fall by more than
    ``max_drop``; return the mask of the inputs kept ``[in_features]`` (bool) and what was measured. A pruning
    that won back less than ``min_gain`` of the accuracy the trigger costs is undone (nothing is pruned; the
    record says what it tried under ``undone``): the trigger's path does not run through those inputs, and
    zeroing them only takes capacity (a ResNet's: every input the trigger raised, half the layer, left the
    trigger as it was).

    ``clean`` ``[N, ...]`` are the clean clips (model inputs) with ``labels`` ``[N]``; ``triggered``
    ``[k N, ...]`` the same clips with each of k triggers added, in that order. The ranking is the mean
    activation with the trigger minus without; only inputs the trigger raises are pruned. Neural Cleanse's
    mitigation by pruning (Wang et al., S&P 2019), on the layer Fine-Pruning prunes."""
    trials, shown = _Trials(model, clean), _Trials(model, triggered)
    shown_labels = labels.repeat(triggered.shape[0] // max(1, clean.shape[0]))
    raised = _mean_activation(shown.inputs) - _mean_activation(trials.inputs)
    order = raised.argsort(descending=True)
    candidates = int((raised > 0).sum())
    base = accuracy(trials.logits, labels)
    width = trials.layer.in_features
    size = max(1, math.ceil(step * width))
    keep = torch.ones(width, dtype=torch.bool, device=trials.original.device)
    clean_acc, shown_acc = base, accuracy(shown.logits, shown_labels)
    before = shown_acc
    k = 0
    while shown_acc < clean_acc - max_drop and k < candidates:
        k = min(k + size, candidates)
        trial = torch.ones_like(keep)
        trial[order[:k]] = False
        trial_acc = accuracy(trials(trial), labels)
        if trial_acc < base - max_drop:
            break
        keep, clean_acc, shown_acc = trial, trial_acc, accuracy(shown(trial), shown_labels)
    undone: dict[str, Any] | None = None
    if not keep.all() and shown_acc - before < min_gain * (base - before):
        undone = {
            "tried_inputs": int((~keep).sum()),
            "clean_accuracy": round(clean_acc, 4),
            "triggered_accuracy": round(shown_acc, 4),
            "min_gain": min_gain,
        }
        keep, clean_acc, shown_acc = torch.ones_like(keep), base, before
    trials.apply(keep)
    record: dict[str, Any] = {
        "pruned_inputs": int((~keep).sum()),
        "output_layer_inputs": width,
        "clean_accuracy": [round(base, 4), round(clean_acc, 4)],
        "triggered_accuracy": [round(before, 4), round(shown_acc, 4)],
    }
    return keep, record if undone is None else {**record, "undone": undone}


class FinePruning(FineTune):
    name = "fp"
    Config = FinePruningConfig

    def __init__(self, config: FinePruningConfig | None = None) -> None:
        super().__init__(config)
        self.mask: torch.Tensor | None = None
        self.pruned = 0

    def prepare(self, model: nn.Module, waves: torch.Tensor, labels: torch.Tensor) -> None:
        c: FinePruningConfig = self.config  # type: ignore[assignment]
        self.mask = prune_output_layer(model, waves, labels, c.prune_step, c.max_accuracy_drop)
        self.pruned = int((~self.mask).sum())

    def details(self) -> dict[str, int]:
        return {
            "pruned_inputs": self.pruned,
            "output_layer_inputs": int(self.mask.numel()) if self.mask is not None else 0,
        }

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer) -> float:
        loss = super().train_step(model, x, y, optimizer)  # plain fine-tuning, then the pruned columns back to 0
        keep_pruned(model, self.mask)
        return loss
