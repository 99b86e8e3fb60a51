"""Small models that attacks train for themselves (surrogates, benign reference models).

Trained here from scratch on the data the attacker has: no pretrained weights exist or are
downloaded. A plain Adam loop over device slices, seeded, no validation (the attacker only
needs a usable model, and the victim's test split is never touched).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["train_surrogate", "insert_at"]


def train_surrogate(waves: torch.Tensor, labels: torch.Tensor, n_classes: int, front_end: Any, *,
                    epochs: int, device: torch.device, seed: int, architecture: str = "smallcnn",
                    batch_size: int = 64, lr: float = 1e-3) -> nn.Module:
    """A ``architecture`` model trained on ``waves``/``labels``, returned in eval mode."""
    from core import models

    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = models.build(architecture, n_classes, front_end).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        waves, labels = waves.to(device), labels.to(device)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(waves.shape[0], generator=gen).to(device)
            for start in range(0, order.numel(), batch_size):
                idx = order[start : start + batch_size]
                loss = F.cross_entropy(model(waves[idx]), labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return model.eval()


def insert_at(wave: torch.Tensor, pattern: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """Add ``pattern [L]`` to each row of ``wave [B, T]`` from its ``starts[b]`` (differentiable)."""
    length = pattern.numel()
    cols = starts.view(-1, 1).to(wave.device) + torch.arange(length, device=wave.device).view(1, -1)
    placed = torch.zeros_like(wave).scatter_add(1, cols, pattern.to(wave.dtype).expand(wave.shape[0], -1))
    return wave + placed
