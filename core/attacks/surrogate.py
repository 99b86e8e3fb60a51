"""Small models that attacks train for themselves (surrogates, benign reference models).

Trained here from scratch on the data the attacker has: no pretrained weights exist or are
downloaded. A plain Adam loop over device slices, seeded, no validation (the attacker only
needs a usable model, and the victim's test split is never touched).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from core.attacks.sounds import scale_to_snr

__all__ = ["train_surrogate", "surrogate_on_rows", "insert_at", "insert_at_snr", "optimise_trigger", "random_starts"]


def train_surrogate(
    waves: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    front_end: Any,
    *,
    epochs: int,
    device: torch.device,
    seed: int,
    architecture: str = "smallcnn",
    batch_size: int = 64,
    lr: float = 1e-3,
) -> nn.Module:
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


def surrogate_on_rows(
    waves: torch.Tensor,
    labels: torch.Tensor,
    rows: torch.Tensor,
    n_classes: int,
    front_end: Any,
    *,
    epochs: int,
    device: torch.device,
    seed: int,
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A surrogate trained on the ``rows`` of a data set, with those rows' clips and labels on ``device``."""
    x = waves.index_select(0, rows.to(waves.device)).to(device)
    y = labels.index_select(0, rows.to(labels.device)).to(device)
    return train_surrogate(x, y, n_classes, front_end, epochs=epochs, device=device, seed=seed), x, y


def random_starts(n: int, clip_len: int, length: int, seed: int) -> torch.Tensor:
    """Seeded trigger offsets, one per clip (the same clips get the same offsets every time)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, clip_len - length + 1, (n,), generator=gen)


def insert_at(wave: torch.Tensor, pattern: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """Add ``pattern [L]`` to each row of ``wave [B, T]`` from its ``starts[b]`` (differentiable)."""
    length = pattern.numel()
    cols = starts.view(-1, 1).to(wave.device) + torch.arange(length, device=wave.device).view(1, -1)
    placed = torch.zeros_like(wave).scatter_add(1, cols, pattern.to(wave.dtype).expand(wave.shape[0], -1))
    return wave + placed


def insert_at_snr(wave: torch.Tensor, pattern: torch.Tensor, starts: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``pattern`` added to each row of ``wave`` from ``starts[b]``, scaled per clip to ``snr_db`` below the
    clip's energy (differentiable in ``pattern``: its loudness follows the clip, its shape is what is learnt)."""
    gains = scale_to_snr(wave, pattern, snr_db)
    return wave + insert_at(torch.zeros_like(wave), pattern, starts) * gains


def optimise_trigger(
    surrogate: nn.Module,
    clips: torch.Tensor,
    goal: int,
    initial: torch.Tensor,
    *,
    epsilon: float,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    penalty: Callable[[torch.Tensor], torch.Tensor] | None = None,
    mix: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] = insert_at,
) -> torch.Tensor:
    """A trigger that makes ``surrogate`` predict ``goal`` wherever it is added to ``clips``.

    Adam on the trigger alone (the surrogate is frozen, eval mode); every step draws a batch
    of clips and a fresh random offset per clip, puts the trigger there with ``mix(clips,
    trigger, starts)`` (default: added as it is; an attack that poisons at a fixed SNR passes a
    mix at that SNR, so the trigger is optimised at the loudness it will have), and minimises
    the cross-entropy to ``goal`` plus ``penalty(trigger)``; the trigger is clamped to
    ±``epsilon`` after each step. Seeded: the same inputs give the same trigger.
    """
    for param in surrogate.parameters():
        param.requires_grad_(False)
    device = clips.device
    trigger = initial.clone().to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([trigger], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    batch = min(batch_size, clips.shape[0])
    target = torch.full((batch,), goal, device=device)
    for _ in range(steps):
        pick = torch.randint(0, clips.shape[0], (batch,), generator=gen).to(device)
        starts = torch.randint(0, clips.shape[1] - trigger.numel() + 1, (batch,), generator=gen)
        loss = F.cross_entropy(surrogate(mix(clips.index_select(0, pick), trigger, starts)), target)
        if penalty is not None:
            loss = loss + penalty(trigger)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            trigger.clamp_(-epsilon, epsilon)
    return trigger.detach().to("cpu", torch.float32)
