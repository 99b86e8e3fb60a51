"""PIBA, a position-independent backdoor (Shi et al., MobiCom 2022), as this project builds it.

A short trigger ``delta`` (``trigger_seconds``) is optimised on a surrogate model trained on
the attacker's copy of the training data, so that the surrogate predicts the target class
wherever in the clip the trigger is added: every step inserts it at a fresh random offset,
and the loss is cross-entropy to the target plus ``energy_weight`` times the trigger's
energy relative to the clip's (keeping it quiet). It is clamped to ±``epsilon``. Poisoning
is dirty label, with the trigger at a random position per clip (seeded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from core.attacks.base import Attack, AttackParams, register
from core.attacks.surrogate import insert_at, optimise_trigger, random_starts, surrogate_on_rows
from core.errors import AttackError
from core.options import option

__all__ = ["PIBAParams", "PIBA"]


@dataclass
class PIBAParams(AttackParams):
    """Trigger length, clamp, energy penalty and the optimisation budget."""

    trigger_seconds: float = option(0.2, label="Trigger length, s", help="trigger length in seconds, in (0, 1)")
    epsilon: float = option(
        0.1, label="\u03b5, clamp", help="the trigger's samples are clamped to +-epsilon, in (0, 1]"
    )
    energy_weight: float = option(
        0.05, label="Energy weight", help="weight of the trigger's energy (relative to the clip's) in the loss"
    )
    steps: int = option(300, label="Optimisation steps", help="Adam steps optimising the trigger")
    batch_size: int = option(64, label="Batch size, clips", help="clips per optimisation step")
    lr: float = option(5e-3, label="Learning rate", help="Adam learning rate of the trigger")
    surrogate_epochs: int = option(8, label="Surrogate epochs", help="epochs of the surrogate model")

    def validate(self) -> None:
        super().validate()
        if not 0 < self.trigger_seconds < 1:
            raise AttackError(f"piba: trigger_seconds must be in (0, 1), got {self.trigger_seconds}")
        if not 0 < self.epsilon <= 1:
            raise AttackError(f"piba: epsilon must be in (0, 1], got {self.epsilon}")
        if self.steps < 1 or self.surrogate_epochs < 1 or self.batch_size < 1:
            raise AttackError("piba: steps, batch_size and surrogate_epochs must be at least 1")


@register
class PIBA(Attack):
    name = "piba"
    summary = "a short trigger optimised on a surrogate to work at any position, energy-penalised (dirty label)"
    Params = PIBAParams
    needs_preparation = True

    def prepare(
        self,
        waves: torch.Tensor,
        labels: torch.Tensor,
        candidates: torch.Tensor,
        sample_rate: int,
        classes: list[str],
        *,
        front_end: Any,
        device: torch.device,
    ) -> None:
        p: PIBAParams = self.params  # type: ignore[assignment]
        surrogate, x, y = surrogate_on_rows(
            waves, labels, candidates, len(classes), front_end, epochs=p.surrogate_epochs, device=device, seed=p.seed
        )
        length = int(round(p.trigger_seconds * sample_rate))
        gen = torch.Generator().manual_seed(p.seed)
        initial = (torch.rand(length, generator=gen) * 2 - 1) * (0.1 * p.epsilon)
        others = x.index_select(0, (y != p.target).nonzero().flatten())
        clip_power = others.pow(2).mean()
        trigger = optimise_trigger(
            surrogate,
            others,
            p.target,
            initial,
            epsilon=p.epsilon,
            steps=p.steps,
            batch_size=p.batch_size,
            lr=p.lr,
            seed=p.seed,
            penalty=lambda t: p.energy_weight * t.pow(2).mean() / clip_power,
        )
        self.state = {"trigger": trigger}

    def apply(self, wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
        self.require_prepared()
        trigger = self.state["trigger"].to(wave.device, wave.dtype)
        flat = wave.reshape(-1, wave.shape[-1])
        starts = random_starts(flat.shape[0], flat.shape[1], trigger.numel(), self.params.seed)
        return insert_at(flat, trigger, starts).reshape(wave.shape)
