"""Plain fine-tuning on the clean set: the baseline every defense must beat.

SGD with momentum 0.9 on the same clean share as GN-FT; the authors' FT used lr 0.01
("ft_reg 0.001 ft 0.005" in their notes), which is the default here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.defenses.base import Defense, DefenseConfig
from core.options import override

__all__ = ["FineTuneConfig", "FineTune"]


@dataclass
class FineTuneConfig(DefenseConfig):
    """Plain fine-tuning's settings: the common ones, with the authors' FT learning rate."""

    lr: float = override(DefenseConfig, "lr", 0.01)


class FineTune(Defense):
    name = "ft"
    Config = FineTuneConfig

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = self.loss(model(x), y)
        loss.backward()
        self.optimizer_step(model, optimizer)
        return float(loss.detach())
