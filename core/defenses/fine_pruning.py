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

import torch
from torch import nn
from torch.nn import functional as F

from core.defenses.base import output_layer
from core.defenses.finetune import FineTune, FineTuneConfig
from core.metrics import accuracy, predict_logits
from core.options import option

__all__ = ["FinePruningConfig", "FinePruning", "keep_pruned", "output_layer_activations", "prune_output_layer"]


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


def prune_output_layer(
    model: nn.Module, waves: torch.Tensor, labels: torch.Tensor, step: float, max_drop: float
) -> torch.Tensor:
    """Zero the output layer's least active inputs (by mean activation on ``waves``), ``step`` of them per
    round, while accuracy on ``waves`` stays within ``max_drop`` of the unpruned model's; return the mask
    of the inputs kept ``[in_features]`` (bool). Fine-Pruning's pruning, also GN-FT's ``prune`` option."""
    layer = output_layer(model)
    inputs, logits = _output_layer_inputs(model, waves)
    order = _mean_activation(inputs).argsort()  # least active first
    base = accuracy(logits, labels)
    original = layer.weight.detach().clone()
    bias = None if layer.bias is None else layer.bias.detach().float()
    # Only the output layer's weights change while pruning, so its inputs are computed once and each
    # trial is one small matmul; a model that does more after that layer gets a full pass per trial.
    cached = torch.allclose(F.linear(inputs, original.float(), bias), logits, rtol=1e-4, atol=1e-4)
    size = max(1, math.ceil(step * layer.in_features))
    keep = torch.ones(layer.in_features, dtype=torch.bool, device=original.device)
    for k in range(size, layer.in_features, size):
        trial = torch.ones_like(keep)
        trial[order[:k]] = False
        if cached:
            pruned_logits = F.linear(inputs, (original * trial).float(), bias)
        else:
            with torch.no_grad():
                layer.weight.copy_(original * trial)
            pruned_logits = predict_logits(model, waves)
        if accuracy(pruned_logits, labels) < base - max_drop:
            break
        keep = trial
    with torch.no_grad():
        layer.weight.copy_(original * keep)
    return keep


def keep_pruned(model: nn.Module, mask: torch.Tensor | None) -> None:
    """Put the pruned output-layer columns (``mask`` False) back to zero after an optimiser step."""
    if mask is not None:
        with torch.no_grad():
            output_layer(model).weight.mul_(mask)


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
